"""The operator toolkit's engine: inventories, placement of Pods on hosts, sandboxed rendering,
Ansible playbook runs and Fabric SSH fan-outs, each returning one outcome per host.

Modules: ``inventory`` (Ansible host patterns by ansible-core), ``placement``, ``render`` (Flow
YAML and units, in the one sandbox of :mod:`jinad_fab.templating`, which also finds the shipped
files), ``playbooks``, ``lock`` (one changing run per inventory), ``ssh``, ``fleet`` (daemon
fan-out), ``provision_wheels`` (wheels for air-gapped hosts). Nothing here reads the environment or
prints; the CLI does both.
"""
