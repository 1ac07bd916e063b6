# CONTEXT {'gpu_vendor': 'AMD', 'guest_os': 'UBUNTU'}
# The same example image for AMD GPU hosts (a real model would start from a ROCm image).
ARG BASE_DOCKER=localhost:5000/madengine/busybox:1
FROM $BASE_DOCKER
WORKDIR /myworkspace
