"""Deploying the models beyond one process: the Ray Serve application, its config and a KubeRay manifest."""
