"""The operator toolkit's engine: inventories, placement of Pods on hosts, sandboxed rendering,
Ansible playbook runs and Fabric SSH fan-outs, each returning one outcome per host.

Modules: ``assets`` (shipped files), ``inventory``, ``placement``, ``render``, ``playbooks``,
``ssh``, ``fleet`` (daemon fan-out), ``wheelhouse``. Nothing here reads the environment or
prints; the CLI does both.
"""
