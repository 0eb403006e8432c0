//! File descriptors as a budget. A run of 50,000 clients needs more sockets than
//! the open-file limit allows at once (20,000 here, a hard limit nobody can raise),
//! and a built-in server's sockets count too. Rather than fail with EMFILE, a client
//! copy waits until the descriptors it needs are free; the budget is shared by every
//! run of the process, so parallel scenarios cannot starve each other into errors.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::duration::format_duration;

/// Descriptors kept out of the budget for everything that is not a client socket:
/// listeners, program pipes, trace files, the runtime's own.
const RESERVED: u64 = 256;

static BUDGET: OnceLock<(Arc<Semaphore>, u64)> = OnceLock::new();

/// Raises the open-file soft limit to the hard limit (what `ulimit -n` would allow)
/// and returns the limit in force. Called once at start; harmless to call again.
pub fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

fn budget() -> &'static (Arc<Semaphore>, u64) {
    BUDGET.get_or_init(|| {
        let limit = raise_open_file_limit();
        let permits = limit
            .saturating_sub(RESERVED)
            .clamp(16, Semaphore::MAX_PERMITS as u64);
        (Arc::new(Semaphore::new(permits as usize)), limit)
    })
}

/// The open-file limit the budget was made from.
pub fn open_file_limit() -> u64 {
    budget().1
}

/// `n` descriptors, if free now.
pub fn try_acquire(n: u32) -> Option<OwnedSemaphorePermit> {
    Arc::clone(&budget().0).try_acquire_many_owned(n).ok()
}

/// `n` descriptors, once free.
pub async fn acquire(n: u32) -> OwnedSemaphorePermit {
    Arc::clone(&budget().0)
        .acquire_many_owned(n)
        .await
        .expect("the descriptor budget is never closed")
}

/// Why a client copy could not start: every descriptor is held by copies that do
/// not finish, typically because they wait on a signal a later copy would raise.
pub fn starved_message(count: usize, copy: usize, peak: u32, waited: Duration) -> String {
    format!(
        "client copy {copy} of {count} waited {} for a free file descriptor: {peak} were \
         held by earlier copies that did not finish (open-file limit {}). The clients \
         keep their connections open while they wait (on a signal, or on each other), \
         so no copy can start; lower `count`, let each client finish without waiting \
         on later ones, or raise the hard limit (`ulimit -Hn`)",
        format_duration(waited),
        open_file_limit()
    )
}

/// How one run used the budget, for its report.
#[derive(Debug, Clone, Default)]
pub struct DescriptorUse {
    inner: Arc<UseInner>,
}

#[derive(Debug, Default)]
struct UseInner {
    open: AtomicU32,
    peak: AtomicU32,
    waited: AtomicBool,
}

impl DescriptorUse {
    pub fn opened(&self, n: u32) {
        let open = self.inner.open.fetch_add(n, Ordering::Relaxed) + n;
        self.inner.peak.fetch_max(open, Ordering::Relaxed);
    }

    pub fn closed(&self, n: u32) {
        self.inner.open.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn waited(&self) {
        self.inner.waited.store(true, Ordering::Relaxed);
    }

    pub fn peak(&self) -> u32 {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// A line for the report when clients had to wait for descriptors.
    pub fn note(&self) -> Option<String> {
        self.inner.waited.load(Ordering::Relaxed).then(|| {
            format!(
                "clients waited for free file descriptors: at most {} were open at once \
                 (open-file limit {})",
                self.peak(),
                open_file_limit()
            )
        })
    }
}
