"""Root filesystem images: build (mmdebstrap + mkfs.ext4), store by sha256, ship to hosts."""
