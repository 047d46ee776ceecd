//! Power cuts on the simulated host: between any two phases of a first
//! boot, and in the middle of a volume's format. The boot after each
//! brings every volume up, and nothing is made twice that held data.

use super::harness::{all_ready, volume, SimNode, ENCRYPTED, LAID_OUT};
use crate::boot::PHASES;
use crate::host::Host;

#[test]
fn a_power_cut_between_any_two_phases_of_the_first_boot_is_mended_by_the_next() {
    for cut in 1..PHASES.len() {
        let mut node = SimNode::new();
        let config = node.config(ENCRYPTED);
        node.boot_cut_after(std::slice::from_ref(&config), cut)
            .unwrap();
        node.reboot();
        let status = node
            .boot(&[config])
            .unwrap_or_else(|e| panic!("cut after phase {cut}: {e}"));
        all_ready(&status);
        let mut labels: Vec<String> = node
            .host
            .snapshot(&[])
            .by_label()
            .unwrap()
            .into_keys()
            .collect();
        labels.sort();
        assert_eq!(
            labels,
            ["EPHEMERAL", "META", "STATE"],
            "cut after phase {cut}"
        );
        // Cut after STATE was made, the next boot opens it, not re-makes it.
        let state = volume(&status, "STATE");
        assert_eq!(state.created, cut < 4, "cut after phase {cut}: {state:#?}");
    }
}

#[test]
fn a_power_cut_after_any_write_of_a_first_format_leaves_a_volume_the_next_boot_formats() {
    let mut cut = 1;
    loop {
        let mut node = SimNode::laid_out(LAID_OUT);
        let ephemeral = node.host.partition("EPHEMERAL").unwrap().device;
        ephemeral.cut_after(cut);
        let config = node.config(ENCRYPTED);
        let first = node.boot(std::slice::from_ref(&config)).unwrap();
        if volume(&first, "EPHEMERAL").phase == crate::node::status::Phase::Ready {
            assert!(cut > 2, "the format has at least two writes");
            break;
        }
        node.reboot();
        let status = node.boot(&[config]).unwrap();
        all_ready(&status);
        let eph = volume(&status, "EPHEMERAL");
        assert_eq!(eph.keyslots, vec![0, 1], "cut at write {cut}: {eph:#?}");
        cut += 1;
    }
}
