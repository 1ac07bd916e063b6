# CONTEXT {'gpu_vendor': 'NONE', 'guest_os': 'UBUNTU'}
# A CPU-only image for the example models: busybox, whose sh stands in for bash.
ARG BASE_DOCKER=localhost:5000/madengine/busybox:1
FROM $BASE_DOCKER
WORKDIR /myworkspace
