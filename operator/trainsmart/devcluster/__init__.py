"""A real local Kubernetes control plane and a node agent with simulated GPU nodes.

Used by the test suite and by `trainsmart dev`: etcd, kube-apiserver, kube-scheduler and
kube-controller-manager run as local processes on loopback; the node agent plays the kubelet's part.
"""
