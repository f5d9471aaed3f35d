"""The node agent: registers simulated GPU nodes and runs the pods bound to them as local processes."""
