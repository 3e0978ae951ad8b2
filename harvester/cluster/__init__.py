"""The pure parts of the Ray image half: which directories to send, when a batch is overdue,
and the token-bucket arithmetic of the cluster-wide image-host limiter (no Ray, no I/O)."""
