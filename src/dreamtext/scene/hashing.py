"""The spatial hash of the hash-grid encoding, shared by its torch path and its Triton kernel."""

# Instant-NGP spatial-hash primes (thesis eq. 3.18); the first dimension is not scrambled.
HASH_PRIMES = (1, 2654435761, 805459861)
