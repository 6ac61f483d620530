"""Deployment artifacts for the seed's topology: ``portway deployment render --target …`` turns a
``DeploymentPlan`` (public names, certificates, workers, manager, trusted proxies) into an HAProxy
or nginx load balancer configuration, Kubernetes manifests or systemd units."""
