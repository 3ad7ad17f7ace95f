//! Unit tests of the daemon's HTTP surfaces.
