"""The node agent's sandbox: how a container of a bound pod is made to run as a local process.

The pod lifecycle (`pod_worker.py`) decides *what* runs and *when*; this package decides *how*, and speaks
to the lifecycle only through `pod_runtime_contract.py`: each pod's network identity (namespace, veth, an
address from the pod CIDR, a hosts file with cluster names), each container's filesystem view (volumes at
their mount paths in a private mount namespace), the identity it runs as (`runAsUser`, `runAsGroup`,
`fsGroup`) and the fate of its processes (one process group, no stragglers, a crashed agent's leftovers
cleaned up). Without root or namespaces it falls back to host networking, and says so.
`runtime_impl.SandboxRuntime` is the entry point; docs/devcluster.md maps the modules.
"""
