//! Captures every log line the functions write during the tests, to prove secrets never appear.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a subscriber that records every log line at debug level and above.
pub fn capture() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let _ = tracing_subscriber_init(move || writer.clone());
            captured
        })
        .clone()
}

fn tracing_subscriber_init<W>(make: impl Fn() -> W + Send + Sync + 'static) -> Result<(), ()>
where
    W: Write + 'static,
{
    use purse::telemetry::subscriber_with_writer;
    subscriber_with_writer(make).map_err(|_| ())
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
