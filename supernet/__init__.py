"""What architectures are and how they compute: search spaces, ops, shared-weight supernets, final nets."""
