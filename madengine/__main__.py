from madengine.cli.main import run

run()
