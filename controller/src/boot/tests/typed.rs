//! Volumes only a person opens, on the simulated host: asked for after
//! the others are up (the status says so while the question is open), one
//! question at a time, and a wrong answer asked again.

use super::harness::{all_ready, volume, SimNode};
use crate::node::status::{BootStatus, Phase};
use async_trait::async_trait;
use providers::ask::{AskError, Asker, AskerHandle, Question};
use providers::Passphrase;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A person at the console, as a test double: types the given answers in
/// order, and notes what the status file said when each question came.
struct ScriptedPerson {
    answers: Mutex<Vec<&'static str>>,
    status_file: PathBuf,
    seen: Mutex<Vec<(String, Phase, String)>>,
}

#[async_trait]
impl Asker for ScriptedPerson {
    async fn ask(&self, q: &Question) -> Result<Passphrase, AskError> {
        let status = BootStatus::load(&self.status_file).expect("written before asking");
        let p = status.volumes.last().expect("a volume");
        self.seen
            .lock()
            .unwrap()
            .push((q.id.clone(), p.phase, q.message.clone()));
        let mut answers = self.answers.lock().unwrap();
        match answers.is_empty() {
            true => Err(AskError::Cancelled),
            false => Ok(Passphrase::new(answers.remove(0).as_bytes().to_vec())),
        }
    }

    fn channel(&self) -> String {
        "a scripted person".into()
    }
}

const APPLIANCE: &str = include_str!("../../../../examples/appliance.yaml");

fn boot_typing(
    node: &SimNode,
    files: &[PathBuf],
    answers: Vec<&'static str>,
) -> (BootStatus, Vec<(String, Phase, String)>) {
    let mut opts = node.opts(files);
    let person = Arc::new(ScriptedPerson {
        answers: Mutex::new(answers),
        status_file: opts.node.status_file.clone(),
        seen: Mutex::new(Vec::new()),
    });
    opts.asker = Some(AskerHandle(person.clone()));
    let status = node.boot_with(&opts).unwrap();
    let seen = person.seen.lock().unwrap().clone();
    (status, seen)
}

#[test]
fn a_typed_volume_is_asked_for_last_and_a_wrong_answer_is_asked_again() {
    let mut node = SimNode::new();
    let config = node.config(APPLIANCE);
    // First boot: the new passphrase, asked twice.
    let (status, seen) = boot_typing(&node, &[config], vec!["models-pw", "models-pw"]);
    all_ready(&status);
    let names: Vec<&str> = status.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["STATE", "EPHEMERAL", "persistence"]);
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (_, phase, _) in &seen {
        assert_eq!(
            *phase,
            Phase::WaitingForKey,
            "the status says it waits while asking"
        );
    }
    assert_eq!(volume(&status, "persistence").keyslots, vec![0, 9]);
    // Next boot: a wrong answer, then the right one.
    node.reboot();
    let (status, seen) = boot_typing(&node, &[], vec!["wrong", "models-pw"]);
    all_ready(&status);
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Asked again, saying so and how many tries are left (3 in the example).
    let asked: Vec<&str> = seen.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(
        asked,
        [
            "Passphrase for your models and data",
            "Not accepted, 2 tries left. Passphrase for your models and data"
        ]
    );
    let p = volume(&status, "persistence");
    assert!(!p.created, "{p:#?}");
    assert_eq!(p.unlocked_by.map(|(slot, _)| slot.get()), Some(0), "{p:#?}");
    // The recovery key held at the first boot was never fetched: only
    // slot 9 is made again (docs/appliance.md), the typed key stays.
    assert!(p.changes.iter().all(|c| !c.contains("slot 0")), "{p:#?}");
}

#[test]
fn nobody_answering_leaves_the_typed_volume_unformatted_and_the_others_up() {
    let node = SimNode::new();
    let (status, seen) = boot_typing(&node, &[node.config(APPLIANCE)], vec![]);
    assert_eq!(seen.len(), 1, "asked once, cancelled: {seen:?}");
    for name in ["STATE", "EPHEMERAL"] {
        assert_eq!(volume(&status, name).phase, Phase::Ready, "{name}");
    }
    // Formatted with only its recovery key, it would open at no later
    // boot without that key: nothing is written instead.
    let p = volume(&status, "persistence");
    assert_eq!(p.phase, Phase::Failed, "{p:#?}");
    let why = p.error.as_deref().unwrap();
    assert!(
        why.contains("only its recovery key") && why.contains("cancelled"),
        "{why}"
    );
    assert_eq!(
        node.host.partition("persistence").unwrap().device.writes(),
        0
    );
    assert_eq!(
        node.host.mounted_at(std::path::Path::new("/persistence")),
        None
    );
}

/// `decryptInPlace` on a volume only a person opens: its key is asked for
/// with the other typed keys, after the unattended volumes are up (the
/// status says it waits while asking), never among them; once plain, it is
/// asked for nothing.
#[test]
fn a_typed_volume_decrypted_in_place_is_asked_for_in_the_typed_round() {
    let mut node = SimNode::new();
    let config = node.config(APPLIANCE);
    let (status, _) = boot_typing(&node, &[config], vec!["models-pw", "models-pw"]);
    all_ready(&status);
    node.reboot();
    let plain = node.config(&format!("{APPLIANCE}  decryptInPlace: true\n"));
    let (status, seen) = boot_typing(&node, std::slice::from_ref(&plain), vec!["models-pw"]);
    all_ready(&status);
    let asked: Vec<(&str, Phase)> = seen.iter().map(|(id, p, _)| (id.as_str(), *p)).collect();
    assert_eq!(
        asked,
        [("volctl:persistence", Phase::WaitingForKey)],
        "{seen:?}"
    );
    let p = volume(&status, "persistence");
    assert!(!p.encrypted, "{p:#?}");
    assert!(
        p.changes
            .iter()
            .any(|c| c.starts_with("decrypted in place")),
        "{p:#?}"
    );
    assert_eq!(node.host.counts().decryptions, 1);

    node.reboot();
    let (status, seen) = boot_typing(&node, &[plain], vec![]);
    all_ready(&status);
    assert!(seen.is_empty(), "nothing to ask once plain: {seen:?}");
    assert_eq!(node.host.counts().decryptions, 0);
}
