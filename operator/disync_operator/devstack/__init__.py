"""Local development and test stack: control plane, emulator, operator wiring."""
