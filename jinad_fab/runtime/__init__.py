"""Runtime: Peas, Pods, the Gateway and the sockets between them (the only place real sockets live)."""
