//! A quiet line on the terminal while a KDF runs long: nothing for a run
//! shorter than [`QUIET_FOR`], then `- KDF: add keyslot (disk.img): 1.4 s`
//! redrawn in place and wiped when the run ends. Only on a terminal
//! (stderr), only for commands that ask nothing while a KDF runs.

use controller::device::kdf_watch::{KdfRun, KdfWatcher};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A run shorter than this shows nothing.
pub const QUIET_FOR: Duration = Duration::from_millis(500);

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// The spinner's frames (ASCII: a Linux console has no braille glyphs).
const FRAMES: [char; 4] = ['-', '\\', '|', '/'];

/// The line for the runs under way at `now`, if one should show.
pub fn line(runs: &[KdfRun], now: Instant, tick: usize) -> Option<String> {
    let oldest = runs.iter().min_by_key(|r| r.started)?;
    let elapsed = now.saturating_duration_since(oldest.started);
    if elapsed < QUIET_FOR {
        return None;
    }
    let more = match runs.len() {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    Some(format!(
        "{} KDF: {} ({}){more}: {:.1} s",
        FRAMES[tick % FRAMES.len()],
        oldest.op,
        oldest.device,
        elapsed.as_secs_f64()
    ))
}

/// The runs under way and whether a line is on screen.
#[derive(Default)]
struct Screen {
    runs: Vec<KdfRun>,
    shown: bool,
}

impl Screen {
    /// Wipes the line, if one is shown.
    fn wipe(&mut self, out: &mut impl Write) {
        if self.shown {
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
            self.shown = false;
        }
    }

    fn draw(&mut self, out: &mut impl Write, tick: usize) {
        if let Some(text) = line(&self.runs, Instant::now(), tick) {
            let _ = write!(out, "\r\x1b[2K{text}");
            let _ = out.flush();
            self.shown = true;
        }
    }
}

/// The watcher that draws on stderr.
pub struct Ticker(Arc<Mutex<Screen>>);

impl Ticker {
    /// Starts the drawing thread; install the result with
    /// [`controller::device::kdf_watch::watch`].
    pub fn start() -> Ticker {
        let screen = Arc::new(Mutex::new(Screen::default()));
        let drawn = Arc::clone(&screen);
        std::thread::spawn(move || {
            for tick in 0.. {
                std::thread::sleep(TICK);
                if let Ok(mut s) = drawn.lock() {
                    s.draw(&mut std::io::stderr(), tick);
                }
            }
        });
        Ticker(screen)
    }
}

impl KdfWatcher for Ticker {
    fn started(&self, run: &KdfRun) {
        if let Ok(mut s) = self.0.lock() {
            s.runs.push(run.clone());
        }
    }

    fn finished(&self, run: &KdfRun) {
        if let Ok(mut s) = self.0.lock() {
            s.runs.retain(|r| r.id != run.id);
            s.wipe(&mut std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: u64, op: &'static str, started: Instant) -> KdfRun {
        KdfRun {
            id,
            op,
            device: "disk.img".into(),
            started,
        }
    }

    #[test]
    fn a_short_run_shows_nothing_a_long_one_its_time() {
        let t0 = Instant::now();
        let runs = [run(1, "unlock", t0)];
        assert_eq!(line(&runs, t0 + Duration::from_millis(300), 0), None);
        assert_eq!(
            line(&runs, t0 + Duration::from_millis(1400), 1).as_deref(),
            Some("\\ KDF: unlock (disk.img): 1.4 s")
        );
        assert_eq!(line(&[], t0 + Duration::from_secs(5), 0), None);
    }

    #[test]
    fn several_runs_show_the_oldest_and_a_count() {
        let t0 = Instant::now();
        let runs = [
            run(2, "add keyslot", t0 + Duration::from_secs(1)),
            run(1, "unlock", t0),
        ];
        let text = line(&runs, t0 + Duration::from_secs(2), 2).unwrap();
        assert_eq!(text, "| KDF: unlock (disk.img) and 1 more: 2.0 s");
    }

    #[test]
    fn the_line_is_wiped_once_when_the_run_ends() {
        let t0 = Instant::now() - Duration::from_secs(1);
        let mut screen = Screen {
            runs: vec![run(1, "unlock", t0)],
            shown: false,
        };
        let mut out = Vec::new();
        screen.draw(&mut out, 0);
        assert!(String::from_utf8_lossy(&out).starts_with("\r\x1b[2K- KDF: unlock"));
        screen.runs.clear();
        out.clear();
        screen.wipe(&mut out);
        screen.wipe(&mut out);
        assert_eq!(out, b"\r\x1b[2K", "wiped once");
    }
}
