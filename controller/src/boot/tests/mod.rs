//! Unit tests of the boot: one volume's phases on the simulated device
//! (`volume`), and the whole node-level boot on the simulated host (the
//! rest): layout, config sources, faults, wipes and existing volumes.

mod config;
mod decrypt;
mod disk_volume;
mod faults;
mod harness;
mod initramfs;
mod layout;
mod swap;
mod system_volumes;
mod typed;
mod volume;
mod wipes;
