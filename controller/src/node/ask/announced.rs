//! A question a command posts for the ask-password agents: before it
//! waits, the command says on stderr what it waits for, where the question
//! is, and how to answer it, so a command run from a script or a service
//! (no terminal to ask on) never waits in silence.

use providers::ask::{AskError, Asker, Question};
use providers::Passphrase;

/// `A`, announcing each question on stderr before it waits.
pub struct Announced<A>(pub A);

#[async_trait::async_trait]
impl<A: Asker> Asker for Announced<A> {
    async fn ask(&self, q: &Question) -> Result<Passphrase, AskError> {
        eprintln!("{}", announcement(q, &self.0.channel()));
        self.0.ask(q).await
    }

    fn channel(&self) -> String {
        self.0.channel()
    }
}

/// The line said before waiting.
fn announcement(q: &Question, channel: &str) -> String {
    let until = match q.timeout {
        Some(t) => format!("for {} s", t.as_secs()),
        None => "until answered (Ctrl-C stops it; nothing is written meanwhile)".into(),
    };
    format!(
        "{}: asked on the {channel}; waiting {until} (answer with `systemd-tty-ask-password-agent --query` as root)",
        q.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_says_what_where_how_and_how_long() {
        let q = Question {
            id: "volctl:persistence".into(),
            message: "Passphrase for persistence".into(),
            timeout: None,
        };
        let line = announcement(&q, "ask-password agents watching /run/systemd/ask-password");
        assert!(
            line.starts_with("Passphrase for persistence: asked on the ask-password agents"),
            "{line}"
        );
        assert!(line.contains("/run/systemd/ask-password"), "{line}");
        assert!(
            line.contains("systemd-tty-ask-password-agent --query"),
            "{line}"
        );
        assert!(line.contains("until answered"), "{line}");
        let timed = Question {
            timeout: Some(std::time::Duration::from_secs(90)),
            ..q
        };
        assert!(announcement(&timed, "x").contains("for 90 s"));
    }
}
