"""The local environment: a Kubernetes control plane per region, a Pulumi file backend, a git remote, moto."""
