"""Local runtimes: models hosted by Modelport itself, each in its own worker process."""
