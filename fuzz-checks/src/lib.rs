//! The fuzz suite's checks, shared by the cargo-fuzz targets in `fuzz/` and by
//! `cargo test` (tests/integration/fuzz_corpora.rs replays every committed seed
//! and regression input through them), so an input the fuzzer once crashed on is
//! an ordinary failing test on stable Rust, without cargo-fuzz.
//!
//! ```text
//!  fuzz/fuzz_targets/NAME.rs --+                     +-- framing codecs (raw bytes,
//!                              +--> Target::run ---->+   round trips, split invariance)
//!  tests/.../fuzz_corpora.rs --+    (this module)    +-- tokio-util's codecs (differential)
//!                                                    +-- scenario::load_str, trace::import
//! ```
//!
//! Every check panics when a property fails, and every check runs under an
//! allocation budget ([`within_budget`]): with [`CountingAlloc`] installed as the
//! global allocator (the fuzz crate and the replay test install it), an input
//! whose decoding holds more memory than a bound tied to the input's size and the
//! codec's configured maximum is a failure, so a 4-byte length prefix can never
//! buy gigabytes. Without that allocator the budget is simply not measured.
//!
//! What each [`Target`] checks is listed in FUZZING.md, next to every by-design
//! difference the differential targets normalise away.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};
use tokio_util::codec::{Decoder, LengthDelimitedCodec, LinesCodec, LinesCodecError};

use wirecheck::framing::{
    parse_varint, put_varint, FrameError, FramingConfig, FramingKind, JsonHeaderCodec,
    LengthPrefix, LengthPrefixedCodec, LineCodec, Terminator, VarintProblem, MAX_VARINT_LEN,
};
use wirecheck::scenario::{load_str, tree, LoadError};

pub use arbitrary;

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

/// One fuzz target: a file `fuzz/fuzz_targets/NAME.rs`, a corpus and a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Length-prefixed decoding of arbitrary bytes under arbitrary options.
    LengthRaw,
    /// Varint-delimited decoding of arbitrary bytes.
    VarintRaw,
    /// LF and CRLF line decoding of arbitrary bytes.
    LineRaw,
    /// json-header decoding of arbitrary bytes.
    JsonHeaderRaw,
    /// Structured: encode messages with any framing, decode in chunks.
    RoundTrip,
    /// Structured: json-header frames with arbitrary JSON headers.
    JsonHeaderRoundTrip,
    /// wirecheck's length-prefixed decoder against tokio-util's `LengthDelimitedCodec`.
    LengthVsTokio,
    /// wirecheck's LF line decoder against tokio-util's `LinesCodec`.
    LinesVsTokio,
    /// The scenario file loader.
    ScenarioParse,
    /// The pcap/pcapng importer.
    TraceImport,
    /// Structured: a stream fed in arbitrary chunks to the incremental regex,
    /// `contains` and line matchers, against matching the whole buffer at once.
    MatcherChunks,
    /// Structured: the TCP fault pipeline of a proxy under a virtual clock.
    ProxyPipeline,
}

impl Target {
    /// Every target, in the order ci/fuzz.sh runs them.
    pub const ALL: [Target; 12] = [
        Target::LengthRaw,
        Target::VarintRaw,
        Target::LineRaw,
        Target::JsonHeaderRaw,
        Target::RoundTrip,
        Target::JsonHeaderRoundTrip,
        Target::LengthVsTokio,
        Target::LinesVsTokio,
        Target::ScenarioParse,
        Target::TraceImport,
        Target::MatcherChunks,
        Target::ProxyPipeline,
    ];

    /// The target's name: its file in fuzz/fuzz_targets/ and its folders under
    /// fuzz/seeds/, fuzz/regressions/ and fuzz/dict/.
    pub const fn name(self) -> &'static str {
        match self {
            Target::LengthRaw => "length_raw",
            Target::VarintRaw => "varint_raw",
            Target::LineRaw => "line_raw",
            Target::JsonHeaderRaw => "json_header_raw",
            Target::RoundTrip => "round_trip",
            Target::JsonHeaderRoundTrip => "json_header_round_trip",
            Target::LengthVsTokio => "length_vs_tokio",
            Target::LinesVsTokio => "lines_vs_tokio",
            Target::ScenarioParse => "scenario_parse",
            Target::TraceImport => "trace_import",
            Target::MatcherChunks => "matcher_chunks",
            Target::ProxyPipeline => "proxy_pipeline",
        }
    }

    /// The target called `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Runs the target's check on one input, exactly as the fuzz target does
    /// (structured targets read their input with `arbitrary`, like
    /// libfuzzer-sys's typed `fuzz_target!`). Panics when a property fails.
    pub fn run(self, data: &[u8]) {
        match self {
            Target::LengthRaw => check_length_raw(data),
            Target::VarintRaw => check_varint_raw(data),
            Target::LineRaw => check_line_raw(data),
            Target::JsonHeaderRaw => check_json_header_raw(data),
            Target::RoundTrip => {
                if let Some(input) = structured::<RoundTripInput>(data) {
                    check_round_trip(&input);
                }
            }
            Target::JsonHeaderRoundTrip => {
                if let Some(input) = structured::<JsonRoundTripInput>(data) {
                    check_json_header_round_trip(&input);
                }
            }
            Target::LengthVsTokio => check_length_vs_tokio(data),
            Target::LinesVsTokio => check_lines_vs_tokio(data),
            Target::ScenarioParse => check_scenario_parse(data),
            Target::TraceImport => check_trace_import(data),
            Target::MatcherChunks => {
                if let Some(input) = structured::<MatcherChunksInput>(data) {
                    check_matcher_chunks(&input);
                }
            }
            Target::ProxyPipeline => {
                if let Some(input) = structured::<ProxyPipelineInput>(data) {
                    check_proxy_pipeline(&input);
                }
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads a structured input the way libfuzzer-sys's typed `fuzz_target!` does:
/// too short for the type's minimum size, or not readable, is no input at all.
pub fn structured<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    if data.len() < T::size_hint(0).0 {
        return None;
    }
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}

// ---------------------------------------------------------------------------
// Allocation budget
// ---------------------------------------------------------------------------

/// A global allocator that counts live heap bytes per thread and remembers the
/// peak, so [`within_budget`] can bound what one input makes the code under test
/// allocate. It delegates to the system allocator.
///
/// Install it with `#[global_allocator] static A: CountingAlloc = CountingAlloc;`
/// (the fuzz crate's lib.rs and the corpus replay test do). Counting is per
/// thread, so parallel tests do not disturb each other's measurements; memory
/// freed on another thread than it was allocated on only makes a measurement
/// lower, never higher.
///
/// An allocation that would take a budgeted thread far past its bound (twice
/// the bound plus 256 MiB) is refused before it happens: the allocator prints
/// what was asked and aborts, since carrying on would exhaust the machine. Less
/// than that is let through and reported by [`within_budget`] as a panic.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

static COUNTING_ACTIVE: AtomicBool = AtomicBool::new(false);

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// Absolute live-byte ceiling of the innermost budget on this thread.
    static HARD_LIMIT: Cell<isize> = const { Cell::new(isize::MAX) };
    static BUDGET_NAME: Cell<&'static str> = const { Cell::new("") };
}

/// How far past its bound a budgeted thread may go before an allocation is
/// refused outright: twice the bound plus this.
const HARD_SLACK: usize = 256 << 20;

fn grow(bytes: usize) -> bool {
    let bytes = bytes.min(isize::MAX as usize) as isize;
    let live = LIVE.get().saturating_add(bytes);
    if live > HARD_LIMIT.get() {
        return false;
    }
    LIVE.set(live);
    if live > PEAK.get() {
        PEAK.set(live);
    }
    true
}

fn shrink(bytes: usize) {
    let bytes = bytes.min(isize::MAX as usize) as isize;
    LIVE.set(LIVE.get().saturating_sub(bytes));
}

/// Prints why an allocation was refused and aborts, without allocating.
#[cold]
fn refuse(size: usize) -> ! {
    struct Stack {
        buf: [u8; 320],
        len: usize,
    }
    impl fmt::Write for Stack {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let n = s.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut msg = Stack {
        buf: [0; 320],
        len: 0,
    };
    let _ = fmt::Write::write_fmt(
        &mut msg,
        format_args!(
            "\nwirecheck fuzzing: allocation budget blown in `{}`: an allocation of {} bytes \
             would take this thread's live heap to {} bytes, past the hard ceiling of {} \
             (2 x budget + 256 MiB); aborting\n",
            BUDGET_NAME.get(),
            size,
            LIVE.get()
                .saturating_add(size.min(isize::MAX as usize) as isize),
            HARD_LIMIT.get()
        ),
    );
    // SAFETY: writes `msg.len` initialised bytes of a live stack buffer to fd 2.
    unsafe {
        libc::write(2, msg.buf.as_ptr().cast(), msg.len);
    }
    std::process::abort()
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the bookkeeping only touches const-initialised thread-locals
// without destructors, which neither allocate nor can be accessed after
// destruction.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        COUNTING_ACTIVE.store(true, Ordering::Relaxed);
        if !grow(layout.size()) {
            refuse(layout.size());
        }
        let ptr = System.alloc(layout);
        if ptr.is_null() {
            shrink(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        COUNTING_ACTIVE.store(true, Ordering::Relaxed);
        if !grow(layout.size()) {
            refuse(layout.size());
        }
        let ptr = System.alloc_zeroed(layout);
        if ptr.is_null() {
            shrink(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !grow(new_size - old) {
            refuse(new_size - old);
        }
        let new = System.realloc(ptr, layout, new_size);
        if new.is_null() {
            if new_size > old {
                shrink(new_size - old);
            }
        } else if new_size < old {
            shrink(old - new_size);
        }
        new
    }
}

/// Whether [`CountingAlloc`] is this process's global allocator (it has served
/// at least one allocation).
pub fn counting_allocator_active() -> bool {
    COUNTING_ACTIVE.load(Ordering::Relaxed)
}

/// Runs `f` and returns its result with the peak of this thread's live heap
/// bytes during the call, above the level at its start. Always 0 unless
/// [`CountingAlloc`] is the global allocator.
pub fn measure_peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.get();
    let outer_peak = PEAK.get();
    PEAK.set(base);
    let result = f();
    let peak = PEAK.get();
    PEAK.set(outer_peak.max(peak));
    (result, (peak - base).max(0) as usize)
}

/// Restores the enclosing budget's limit even when the check panics.
struct BudgetScope {
    outer_limit: isize,
    outer_name: &'static str,
    outer_peak: isize,
}

impl Drop for BudgetScope {
    fn drop(&mut self) {
        HARD_LIMIT.set(self.outer_limit);
        BUDGET_NAME.set(self.outer_name);
        PEAK.set(self.outer_peak.max(PEAK.get()));
    }
}

/// Runs `f`, which must not make this thread's live heap grow by more than
/// `bound` bytes at any moment; panics (after `f` returns) if it did, saying
/// `what` was measured and how the bound was made (`basis`). An allocation far
/// beyond the bound aborts at once (see [`CountingAlloc`]). Budgets nest.
pub fn within_budget<R>(what: &'static str, bound: usize, basis: &str, f: impl FnOnce() -> R) -> R {
    let base = LIVE.get();
    let hard = bound.saturating_mul(2).saturating_add(HARD_SLACK);
    let hard = base.saturating_add(hard.min(isize::MAX as usize) as isize);
    let scope = BudgetScope {
        outer_limit: HARD_LIMIT.get(),
        outer_name: BUDGET_NAME.get(),
        outer_peak: PEAK.get(),
    };
    HARD_LIMIT.set(hard.min(scope.outer_limit));
    BUDGET_NAME.set(what);
    PEAK.set(base);
    let result = f();
    let peak = (PEAK.get() - base).max(0) as usize;
    drop(scope);
    assert!(
        peak <= bound,
        "allocation budget exceeded in `{what}`: the heap grew by {peak} bytes at its peak, \
         over the bound of {bound} bytes ({basis})"
    );
    result
}

/// Fixed allowance on top of every bound: small bookkeeping, error strings,
/// one-time allocations of the standard library.
pub const BUDGET_SLACK: usize = 1 << 20;

/// The bound for decoding an `input_len`-byte stream with `codecs` codecs alive
/// at once, each allowed to reserve `per_codec` bytes for the frame it is
/// waiting for: `4 x input + codecs x per_codec + 1 MiB`.
pub fn decode_bound(input_len: usize, codecs: usize, per_codec: usize) -> usize {
    input_len
        .saturating_mul(4)
        .saturating_add(codecs.saturating_mul(per_codec))
        .saturating_add(BUDGET_SLACK)
}

/// Bytes of parsed `serde_json::Value` a json-header codec may hold per byte
/// of header text: many tiny values cost far more parsed than as text (a
/// 32-byte `Value` per two-byte `0,` in a vector that may have doubled:
/// measured at 31 for `[0,0,...]`, 21 for `[[],[],...]`, 12 for objects), so
/// the bound is twice the worst measured.
pub const JSON_VALUE_FACTOR: usize = 64;

/// What one codec for `config` may hold beyond the bytes it was given, when
/// fed a `stream_len`-byte stream: the largest frame it may reserve room for,
/// and for json-header the parsed header.
pub fn codec_allowance(config: &FramingConfig, stream_len: usize) -> usize {
    match config.kind {
        FramingKind::Varint => config.max_frame.saturating_add(MAX_VARINT_LEN),
        FramingKind::Line | FramingKind::Crlf => config.max_line.saturating_add(2),
        FramingKind::JsonHeader => 4usize
            .saturating_add(config.max_header)
            .saturating_add(config.max_frame)
            .saturating_add(JSON_VALUE_FACTOR.saturating_mul(config.max_header.min(stream_len))),
        kind => {
            let width = kind.length_prefix().map_or(8, LengthPrefix::width);
            config.max_frame.saturating_add(width)
        }
    }
}

// ---------------------------------------------------------------------------
// Options and chunk sizes from raw bytes
// ---------------------------------------------------------------------------

/// Reads option bytes from the front of a raw input; an exhausted input reads
/// as zeros, so every input, even an empty one, is a valid configuration.
#[derive(Debug, Clone, Copy)]
pub struct Knobs<'a> {
    data: &'a [u8],
}

impl<'a> Knobs<'a> {
    /// Knobs over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Knobs { data }
    }

    /// The next byte, or 0 once the input is used up.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Everything not read yet: the stream to decode.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Limits at and around every boundary a codec or a prefix width has, up to
/// the 1 GiB a scenario file may configure.
pub const BOUNDARY_LIMITS: [usize; 24] = [
    253,
    254,
    255,
    256,
    257,
    1023,
    1024,
    4095,
    4096,
    16_383,
    16_384,
    65_533,
    65_534,
    65_535,
    65_536,
    65_537,
    (1 << 20) - 1,
    1 << 20,
    wirecheck::framing::DEFAULT_MAX_FRAME - 1,
    wirecheck::framing::DEFAULT_MAX_FRAME,
    wirecheck::framing::DEFAULT_MAX_FRAME + 1,
    (1 << 24) + 1,
    (1 << 30) - 1,
    1 << 30,
];

/// A limit from one option byte: 0..=191 as is (small limits are the ones a
/// short input can reach), the rest from [`BOUNDARY_LIMITS`].
pub fn limit_from_byte(b: u8) -> usize {
    if b < 0xC0 {
        usize::from(b)
    } else {
        BOUNDARY_LIMITS[usize::from(b - 0xC0) % BOUNDARY_LIMITS.len()]
    }
}

/// Read sizes from one option byte: 0 reads one byte at a time, 255 reads
/// everything at once, anything else cycles through 16 pseudo-random sizes in
/// 1..=64 drawn from the byte.
pub fn chunk_sizes(seed: u8) -> Vec<usize> {
    match seed {
        0 => vec![1],
        255 => Vec::new(),
        _ => {
            let mut state = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
            (0..16)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    (state % 64) as usize + 1
                })
                .collect()
        }
    }
}

// ---------------------------------------------------------------------------
// Feeding a decoder
// ---------------------------------------------------------------------------

/// Where a decoder was when it produced an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// From `decode`, with more input possibly to come.
    Stream,
    /// From `decode_eof`, after the whole stream was given.
    Eof,
    /// Finished: clean end of stream, or after a fatal error.
    Done,
}

/// One outcome of a [`Feed`]: a frame or an error, and the phase it came from.
pub type Step<D> = (Result<<D as Decoder>::Item, <D as Decoder>::Error>, Phase);

/// Feeds a stream to a decoder in reads of the given sizes (cycled; none means
/// the whole stream in one read), like a read loop on a socket: after each read
/// `decode` until it wants more, at the end `decode_eof` until it is done. A
/// decoding error stops the feed unless `recoverable` says decoding goes on.
///
/// It yields one outcome at a time, so several decoders can be compared in
/// lockstep without storing their outcomes (memory stays within the budget).
pub struct Feed<'a, D: Decoder> {
    /// The decoder.
    pub codec: D,
    /// Bytes given to the decoder and not consumed yet.
    pub buf: BytesMut,
    stream: &'a [u8],
    pos: usize,
    sizes: &'a [usize],
    next_size: usize,
    phase: Phase,
    fatal_phase: Option<Phase>,
    recoverable: fn(&D::Error) -> bool,
    outcomes: usize,
}

impl<'a, D: Decoder> Feed<'a, D> {
    /// A feed of `stream` to `codec` in reads of `sizes`.
    pub fn new(
        codec: D,
        stream: &'a [u8],
        sizes: &'a [usize],
        recoverable: fn(&D::Error) -> bool,
    ) -> Self {
        Feed {
            codec,
            buf: BytesMut::new(),
            stream,
            pos: 0,
            sizes,
            next_size: 0,
            phase: Phase::Stream,
            fatal_phase: None,
            recoverable,
            outcomes: 0,
        }
    }

    /// Bytes handed to the decoder so far.
    pub fn fed(&self) -> usize {
        self.pos
    }

    /// The phase a fatal error came from, once there was one.
    pub fn fatal_phase(&self) -> Option<Phase> {
        self.fatal_phase
    }

    fn read_more(&mut self) {
        let left = self.stream.len() - self.pos;
        let n = if self.sizes.is_empty() {
            left
        } else {
            let size = self.sizes[self.next_size % self.sizes.len()];
            self.next_size += 1;
            size.clamp(1, left)
        };
        self.buf
            .extend_from_slice(&self.stream[self.pos..self.pos + n]);
        self.pos += n;
    }

    /// The next frame or error, with the phase it came from; `None` once done.
    pub fn next_outcome(&mut self) -> Option<Step<D>> {
        loop {
            let phase = self.phase;
            let result = match phase {
                Phase::Done => return None,
                Phase::Stream => match self.codec.decode(&mut self.buf) {
                    Ok(Some(item)) => Ok(item),
                    Ok(None) => {
                        if self.pos == self.stream.len() {
                            self.phase = Phase::Eof;
                        } else {
                            self.read_more();
                        }
                        continue;
                    }
                    Err(err) => Err(err),
                },
                Phase::Eof => match self.codec.decode_eof(&mut self.buf) {
                    Ok(Some(item)) => Ok(item),
                    Ok(None) => {
                        self.phase = Phase::Done;
                        return None;
                    }
                    Err(err) => Err(err),
                },
            };
            self.outcomes += 1;
            // Every frame and every error stands for at least one input byte
            // (plus one fatal error or end-of-stream error): more outcomes
            // than that means the decoder is going round in circles.
            assert!(
                self.outcomes <= self.stream.len() + 1,
                "decoder livelock: {} outcomes from a {}-byte stream without consuming input",
                self.outcomes,
                self.stream.len()
            );
            if let Err(err) = &result {
                if !(self.recoverable)(err) {
                    self.fatal_phase = Some(phase);
                    self.phase = Phase::Done;
                }
            }
            return Some((result, phase));
        }
    }
}

/// A wirecheck frame or decoding error.
pub type Outcome = Result<wirecheck::framing::Frame, FrameError>;

fn frame_error_recoverable(err: &FrameError) -> bool {
    err.is_recoverable()
}

/// A feed of `stream` to a fresh codec for `config`.
pub fn frame_feed<'a>(
    config: &FramingConfig,
    stream: &'a [u8],
    sizes: &'a [usize],
) -> Feed<'a, wirecheck::framing::FrameCodec> {
    Feed::new(config.codec(), stream, sizes, frame_error_recoverable)
}

/// Shows a stream's first bytes in assertion messages.
struct Head<'a>(&'a [u8]);

impl fmt::Display for Head<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 96;
        for b in self.0.iter().take(SHOWN) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// Decodes `stream` with `config` once per entry of `reads` (read sizes, see
/// [`Feed`]) in lockstep, and checks that every reading yields the same frames
/// and errors (offsets included), in the same order, with the same ending; and
/// that each outcome is sound on its own (see [`check_outcome`]). With an
/// `oracle`, the first reading must also agree with it.
pub fn check_split_invariance(
    config: &FramingConfig,
    stream: &[u8],
    reads: &[&[usize]],
    mut oracle: Option<&mut dyn Iterator<Item = Outcome>>,
) {
    let mut feeds: Vec<_> = reads
        .iter()
        .map(|sizes| frame_feed(config, stream, sizes))
        .collect();
    let mut tracker = Placement::default();
    let mut index = 0usize;
    loop {
        let (first, rest) = feeds.split_first_mut().expect("at least one reading");
        let reference = first.next_outcome();
        let end = first.codec.stream_offset();
        for (i, feed) in rest.iter_mut().enumerate() {
            let other = feed.next_outcome();
            let same = match (&reference, &other) {
                (Some((a, _)), Some((b, _))) => a == b,
                (None, None) => true,
                _ => false,
            };
            assert!(
                same,
                "{:?}: outcome #{index} differs between reads of {:?} and {:?}:\n  {:?}\n  {:?}\n\
                 stream: {}",
                config,
                reads[0],
                reads[i + 1],
                reference.as_ref().map(|o| &o.0),
                other.as_ref().map(|o| &o.0),
                Head(stream)
            );
        }
        if let Some(oracle) = oracle.as_deref_mut() {
            let expected = oracle.next();
            assert!(
                reference.as_ref().map(|o| &o.0) == expected.as_ref(),
                "{config:?}: outcome #{index} differs from the reference model:\n  codec: {:?}\n  \
                 model: {:?}\nstream: {}",
                reference.as_ref().map(|o| &o.0),
                expected,
                Head(stream)
            );
        }
        let Some((outcome, phase)) = reference else {
            break;
        };
        check_outcome(config, stream, &outcome, end, &mut tracker);
        if let (Err(err), Some(Phase::Stream)) = (&outcome, feeds[0].fatal_phase()) {
            // A fatal decoding error is sticky: decode keeps returning it.
            let feed = &mut feeds[0];
            let again = feed.codec.decode(&mut feed.buf);
            assert_eq!(
                again.as_ref().err(),
                Some(err),
                "{config:?}: a fatal error is not repeated by the next decode call"
            );
        }
        if outcome.is_err() && phase == Phase::Eof && feeds[0].fatal_phase() == Some(Phase::Eof) {
            // An end-of-stream error drops the partial frame: polling again is
            // a clean end.
            let feed = &mut feeds[0];
            assert_eq!(
                feed.codec.decode_eof(&mut feed.buf),
                Ok(None),
                "{config:?}: decode_eof after an end-of-stream error is not a clean end"
            );
        }
        index += 1;
    }
    let first = &feeds[0];
    if first.fatal_phase() != Some(Phase::Stream) {
        // Ended cleanly or with an end-of-stream error: everything consumed.
        assert_eq!(
            first.codec.stream_offset(),
            stream.len() as u64,
            "{config:?}: the decoder ended without accounting for every input byte"
        );
    }
}

/// What [`check_outcome`] remembers between outcomes.
#[derive(Debug, Default)]
pub struct Placement {
    /// Stream offset just after the last frame.
    prev_end: u64,
    /// Whether an error was reported since the last frame.
    error_since_frame: bool,
}

/// Checks one decoding outcome on its own: a frame's payload is within the
/// configured limit and is exactly where the codec says it ended (`end`, its
/// stream offset after the frame), framed as the encoder would frame it; an
/// error's offset lies inside the stream, after the last frame.
pub fn check_outcome(
    config: &FramingConfig,
    stream: &[u8],
    outcome: &Outcome,
    end: u64,
    placement: &mut Placement,
) {
    match outcome {
        Err(err) => {
            let offset = err.offset();
            assert!(
                offset >= placement.prev_end && offset < stream.len() as u64,
                "{config:?}: error offset {offset} outside {}..{}: {err}",
                placement.prev_end,
                stream.len()
            );
            placement.error_since_frame = true;
        }
        Ok(frame) => {
            assert!(
                end <= stream.len() as u64 && end > placement.prev_end,
                "{config:?}: frame ends at {end}, not after {} and within {} bytes",
                placement.prev_end,
                stream.len()
            );
            let (start, end_usize) = (placement.prev_end as usize, end as usize);
            let wire = &stream[start..end_usize];
            let payload = &frame.payload[..];
            match config.kind {
                FramingKind::Line | FramingKind::Crlf => {
                    assert!(
                        payload.len() <= config.max_line,
                        "{config:?}: a {}-byte line passed max_line",
                        payload.len()
                    );
                    let terminator = if config.kind == FramingKind::Crlf {
                        Terminator::CrLf
                    } else {
                        Terminator::Lf
                    };
                    let body = line_body(wire, terminator).unwrap_or_else(|| {
                        panic!("{config:?}: frame does not end in its terminator")
                    });
                    assert!(
                        body.ends_with(payload),
                        "{config:?}: line payload is not the bytes before its terminator"
                    );
                    // Bytes before the payload can only be an over-long line
                    // that was reported and skipped.
                    assert!(
                        body.len() == payload.len() || placement.error_since_frame,
                        "{config:?}: bytes between two lines vanished without an error"
                    );
                    // What was decoded can be sent again, except an LF line
                    // ending in CR (the LF encoder refuses those by design).
                    if !(terminator == Terminator::Lf && payload.last() == Some(&b'\r')) {
                        let mut tmp = BytesMut::new();
                        config.encode(payload, &mut tmp).unwrap_or_else(|e| {
                            panic!("{config:?}: a decoded line does not re-encode: {e}")
                        });
                    }
                }
                FramingKind::JsonHeader => {
                    assert!(payload.len() <= config.max_frame, "body over max_body");
                    assert!(wire.len() >= 4, "json-header frame shorter than 4 bytes");
                    let h = i32::from_le_bytes([wire[0], wire[1], wire[2], wire[3]]);
                    let h = usize::try_from(h).expect("decoded frame with a negative length");
                    assert!(h <= config.max_header, "header over max_header");
                    assert_eq!(wire.len(), 4 + h + payload.len(), "json-header frame size");
                    assert_eq!(&wire[4 + h..], payload, "json-header body");
                    let header: Map<String, Value> = serde_json::from_slice(&wire[4..4 + h])
                        .expect("decoded header is a JSON object");
                    assert_eq!(Some(&header), frame.header.as_ref(), "decoded header");
                    assert_eq!(
                        header.get("file_size").and_then(Value::as_u64),
                        Some(payload.len() as u64),
                        "file_size"
                    );
                }
                _ => {
                    assert!(
                        payload.len() <= config.max_frame,
                        "{config:?}: a {}-byte payload passed max_frame",
                        payload.len()
                    );
                    assert!(
                        !placement.error_since_frame,
                        "{config:?}: a frame after a fatal error"
                    );
                    // Length-prefixed and varint frames have exactly one
                    // encoding (varints must be minimal): re-encoding the
                    // payload gives back the bytes on the wire.
                    let mut tmp = BytesMut::new();
                    config.encode(payload, &mut tmp).unwrap_or_else(|e| {
                        panic!("{config:?}: a decoded payload does not re-encode: {e}")
                    });
                    assert_eq!(
                        &tmp[..],
                        wire,
                        "{config:?}: frame bytes are not the encoding of the payload"
                    );
                }
            }
            placement.prev_end = end;
            placement.error_since_frame = false;
        }
    }
}

/// The bytes of a line frame before its terminator (LF: one CR before the LF
/// is part of the terminator), or `None` if `wire` does not end in one.
fn line_body(wire: &[u8], terminator: Terminator) -> Option<&[u8]> {
    match terminator {
        Terminator::CrLf => wire.strip_suffix(b"\r\n"),
        Terminator::Lf => {
            let body = wire.strip_suffix(b"\n")?;
            Some(body.strip_suffix(b"\r").unwrap_or(body))
        }
    }
}

// ---------------------------------------------------------------------------
// Reference models
// ---------------------------------------------------------------------------

/// A straightforward whole-stream model of length-prefixed and varint framing,
/// written from the format description rather than from the codecs: what a
/// decoder given the whole stream must report, in order.
pub struct PrefixModel<'a> {
    config: FramingConfig,
    stream: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> PrefixModel<'a> {
    /// A model of `config` (a length-prefixed or varint kind) over `stream`.
    pub fn new(config: &FramingConfig, stream: &'a [u8]) -> Self {
        PrefixModel {
            config: config.clone(),
            stream,
            pos: 0,
            done: false,
        }
    }

    fn header(&self, rest: &[u8]) -> Result<Option<(usize, u64, u64)>, FrameError> {
        let offset = self.pos as u64;
        match self.config.kind.length_prefix() {
            None => {
                // varint: 7 bits per byte, least significant first, minimal.
                let mut value: u128 = 0;
                for (i, &b) in rest.iter().enumerate() {
                    if i == MAX_VARINT_LEN {
                        break;
                    }
                    value |= u128::from(b & 0x7f) << (7 * i);
                    let problem = if i == MAX_VARINT_LEN - 1 && b & 0x80 != 0 {
                        Some(VarintProblem::TooLong)
                    } else if i == MAX_VARINT_LEN - 1 && value > u128::from(u64::MAX) {
                        Some(VarintProblem::Overflow)
                    } else if b & 0x80 == 0 && b == 0 && i > 0 {
                        Some(VarintProblem::Overlong)
                    } else {
                        None
                    };
                    if let Some(problem) = problem {
                        return Err(FrameError::BadVarint { offset, problem });
                    }
                    if b & 0x80 == 0 {
                        return Ok(Some((i + 1, value as u64, value as u64)));
                    }
                }
                Ok(None)
            }
            Some(prefix) => {
                let width = prefix.width();
                if rest.len() < width {
                    return Ok(None);
                }
                let head = &rest[..width];
                let mut be = [0u8; 8];
                let mut le = [0u8; 8];
                be[8 - width..].copy_from_slice(head);
                le[..width].copy_from_slice(head);
                let what = prefix.name();
                let big = matches!(
                    prefix,
                    LengthPrefix::U16Be
                        | LengthPrefix::U32Be
                        | LengthPrefix::I32Be
                        | LengthPrefix::U64Be
                );
                let unsigned = if big || width == 1 {
                    u64::from_be_bytes(be)
                } else {
                    u64::from_le_bytes(le)
                };
                if matches!(prefix, LengthPrefix::I32Le | LengthPrefix::I32Be)
                    && unsigned >= 1 << 31
                {
                    return Err(FrameError::NegativeLength {
                        offset,
                        what: length_label(what),
                        value: i64::from(unsigned as u32 as i32),
                    });
                }
                let payload = if self.config.length_includes_header {
                    unsigned
                        .checked_sub(width as u64)
                        .ok_or(FrameError::LengthBelowHeader {
                            offset,
                            what: length_label(what),
                            length: unsigned,
                            header_len: width as u64,
                        })?
                } else {
                    unsigned
                };
                Ok(Some((width, payload, unsigned)))
            }
        }
    }
}

fn length_label(name: &str) -> &'static str {
    match name {
        "u8" => "u8 length",
        "u16be" => "u16be length",
        "u16le" => "u16le length",
        "u32be" => "u32be length",
        "u32le" => "u32le length",
        "i32le" => "i32le length",
        "i32be" => "i32be length",
        "u64be" => "u64be length",
        _ => "u64le length",
    }
}

impl Iterator for PrefixModel<'_> {
    type Item = Outcome;

    fn next(&mut self) -> Option<Outcome> {
        if self.done || self.pos == self.stream.len() {
            return None;
        }
        let rest = &self.stream[self.pos..];
        let offset = self.pos as u64;
        let fail = |this: &mut Self, err: FrameError| {
            this.done = true;
            Some(Err(err))
        };
        let (head, payload, wire_len) = match self.header(rest) {
            Err(err) => return fail(self, err),
            Ok(None) => {
                let err = FrameError::Truncated {
                    offset,
                    have: rest.len() as u64,
                    expected: None,
                };
                return fail(self, err);
            }
            Ok(Some(parsed)) => parsed,
        };
        let max = self.config.max_frame.min(isize::MAX as usize / 4) as u64;
        if payload > max {
            let what = match self.config.kind.length_prefix() {
                Some(prefix) => length_label(prefix.name()),
                None => "varint length",
            };
            let err = FrameError::TooLarge {
                offset,
                what,
                length: wire_len,
                limit: "max_frame",
                max,
            };
            return fail(self, err);
        }
        let total = head + payload as usize;
        if rest.len() < total {
            let err = FrameError::Truncated {
                offset,
                have: rest.len() as u64,
                expected: Some(total as u64),
            };
            return fail(self, err);
        }
        self.pos += total;
        Some(Ok(wirecheck::framing::Frame::new(Bytes::copy_from_slice(
            &rest[head..total],
        ))))
    }
}

/// A whole-stream model of line framing (LF or CRLF) with `max_line` and the
/// documented recovery: an over-long line is one error, then decoding resumes
/// after its terminator; a stream ending inside an over-long line just ends.
pub struct LineModel<'a> {
    terminator: Terminator,
    max_line: usize,
    stream: &'a [u8],
    pos: usize,
}

impl<'a> LineModel<'a> {
    /// A model over `stream`.
    pub fn new(terminator: Terminator, max_line: usize, stream: &'a [u8]) -> Self {
        LineModel {
            terminator,
            max_line: max_line.min(isize::MAX as usize / 4),
            stream,
            pos: 0,
        }
    }
}

impl Iterator for LineModel<'_> {
    type Item = Outcome;

    fn next(&mut self) -> Option<Outcome> {
        let rest = &self.stream[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let offset = self.pos as u64;
        let label = self.terminator.label();
        let found = match self.terminator {
            Terminator::Lf => rest.iter().position(|&b| b == b'\n').map(|lf| {
                let end = if lf > 0 && rest[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                (end, lf + 1)
            }),
            Terminator::CrLf => rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|cr| (cr, cr + 2)),
        };
        let too_long = FrameError::LineTooLong {
            offset,
            max_line: self.max_line as u64,
            terminator: label,
        };
        match found {
            Some((payload_end, frame_end)) => {
                self.pos += frame_end;
                if payload_end > self.max_line {
                    Some(Err(too_long))
                } else {
                    Some(Ok(wirecheck::framing::Frame::new(Bytes::copy_from_slice(
                        &rest[..payload_end],
                    ))))
                }
            }
            None => {
                self.pos = self.stream.len();
                if rest.len() >= self.max_line + 2 {
                    Some(Err(too_long))
                } else {
                    Some(Err(FrameError::UnterminatedLine {
                        offset,
                        have: rest.len() as u64,
                        terminator: label,
                    }))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Raw-bytes targets
// ---------------------------------------------------------------------------

/// `length_raw`: byte 0 picks the prefix (mod 9) and, in its bit 4,
/// `length_includes_header`; byte 1 is `max_frame` ([`limit_from_byte`]);
/// byte 2 the read sizes ([`chunk_sizes`]); the rest is the stream. Decoded in
/// those reads and all at once, the outcomes must agree with each other and
/// with [`PrefixModel`], and each must be sound ([`check_outcome`]).
pub fn check_length_raw(data: &[u8]) {
    let mut knobs = Knobs::new(data);
    let b0 = knobs.byte();
    let prefix = LengthPrefix::ALL[usize::from(b0) % LengthPrefix::ALL.len()];
    let kind = framing_kind(usize::from(b0) % LengthPrefix::ALL.len());
    debug_assert_eq!(kind.length_prefix(), Some(prefix));
    let mut config = FramingConfig::new(kind);
    config.length_includes_header = b0 & 0x10 != 0;
    config.max_frame = limit_from_byte(knobs.byte());
    let sizes = chunk_sizes(knobs.byte());
    let stream = knobs.rest();
    raw_codec_check("length_raw", &config, stream, &sizes, |c, s| {
        Box::new(PrefixModel::new(c, s))
    });
}

/// `varint_raw`: byte 0 is `max_frame`, byte 1 the read sizes, the rest the
/// stream; checked as [`check_length_raw`]. The first bytes are also parsed
/// by [`parse_varint`] and compared with a plain LEB128 reading.
pub fn check_varint_raw(data: &[u8]) {
    let mut knobs = Knobs::new(data);
    let mut config = FramingConfig::new(FramingKind::Varint);
    config.max_frame = limit_from_byte(knobs.byte());
    let sizes = chunk_sizes(knobs.byte());
    let stream = knobs.rest();
    check_parse_varint(stream);
    raw_codec_check("varint_raw", &config, stream, &sizes, |c, s| {
        Box::new(PrefixModel::new(c, s))
    });
}

/// `parse_varint` against a plain reading of the same bytes, and `put_varint`
/// giving back the same bytes for what it parsed.
fn check_parse_varint(bytes: &[u8]) {
    let parsed = parse_varint(bytes);
    let model = PrefixModel::new(&FramingConfig::new(FramingKind::Varint), bytes).header(bytes);
    match (parsed, model) {
        (Ok(Some((value, len))), Ok(Some((mlen, mvalue, _)))) => {
            assert_eq!((value, len), (mvalue, mlen), "parse_varint value");
            let mut again = BytesMut::new();
            put_varint(value, &mut again);
            assert_eq!(
                &again[..],
                &bytes[..len],
                "put_varint(parse_varint(x)) != x"
            );
            assert_eq!(wirecheck::framing::varint_len(value), len, "varint_len");
        }
        (Ok(None), Ok(None)) => {}
        (Err(problem), Err(FrameError::BadVarint { problem: p, .. })) => {
            assert_eq!(problem, p, "parse_varint problem")
        }
        (parsed, model) => panic!("parse_varint {parsed:?}, model {model:?}: {}", Head(bytes)),
    }
}

/// `line_raw`: byte 0 picks LF (even) or CRLF (odd), byte 1 is `max_line`,
/// byte 2 the read sizes, the rest the stream; checked against [`LineModel`].
pub fn check_line_raw(data: &[u8]) {
    let mut knobs = Knobs::new(data);
    let crlf = knobs.byte() & 1 == 1;
    let kind = if crlf {
        FramingKind::Crlf
    } else {
        FramingKind::Line
    };
    let mut config = FramingConfig::new(kind);
    config.max_line = limit_from_byte(knobs.byte());
    let sizes = chunk_sizes(knobs.byte());
    let stream = knobs.rest();
    let terminator = if crlf {
        Terminator::CrLf
    } else {
        Terminator::Lf
    };
    raw_codec_check("line_raw", &config, stream, &sizes, move |c, s| {
        Box::new(LineModel::new(terminator, c.max_line, s))
    });
}

/// `json_header_raw`: byte 0 is `max_header`, byte 1 `max_body`, byte 2 the
/// read sizes, the rest the stream. No model: the outcomes must agree across
/// readings and each frame must be the header and body the stream holds.
pub fn check_json_header_raw(data: &[u8]) {
    let mut knobs = Knobs::new(data);
    let mut config = FramingConfig::new(FramingKind::JsonHeader);
    config.max_header = limit_from_byte(knobs.byte());
    config.max_frame = limit_from_byte(knobs.byte());
    let sizes = chunk_sizes(knobs.byte());
    let stream = knobs.rest();
    let bound = decode_bound(stream.len(), 2, codec_allowance(&config, stream.len()));
    within_budget("json_header_raw", bound, &budget_basis(&config, 2), || {
        check_split_invariance(&config, stream, &[&sizes, &[]], None);
        // The json-header codec itself agrees and keeps each frame's wire bytes.
        let mut codec = JsonHeaderCodec::new()
            .with_max_header(config.max_header)
            .with_max_body(config.max_frame);
        let mut buf = BytesMut::from(stream);
        let mut at = 0usize;
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            let wire = frame.wire_bytes();
            assert_eq!(&stream[at..at + wire.len()], &wire[..], "wire_bytes");
            assert_eq!(frame.file_size(), frame.body.len() as u64, "file_size");
            assert_eq!(
                frame.raw_header().len() + frame.body.len() + 4,
                wire.len(),
                "raw_header"
            );
            at += wire.len();
        }
    });
}

fn budget_basis(config: &FramingConfig, codecs: usize) -> String {
    format!(
        "4 x input + {codecs} codecs x their allowance of {} bytes + 1 MiB; {config:?}",
        codec_allowance(config, usize::MAX)
    )
}

fn raw_codec_check<M>(
    what: &'static str,
    config: &FramingConfig,
    stream: &[u8],
    sizes: &[usize],
    model: M,
) where
    M: for<'s> Fn(&FramingConfig, &'s [u8]) -> Box<dyn Iterator<Item = Outcome> + 's>,
{
    let bound = decode_bound(stream.len(), 2, codec_allowance(config, stream.len()));
    within_budget(what, bound, &budget_basis(config, 2), || {
        let mut oracle = model(config, stream);
        check_split_invariance(config, stream, &[&[], sizes], Some(&mut *oracle));
    });
}

// ---------------------------------------------------------------------------
// Structured round trips
// ---------------------------------------------------------------------------

/// A limit chosen by `arbitrary`, through [`limit_from_byte`].
#[derive(Clone, Copy, Arbitrary)]
pub struct Limit(pub u8);

impl Limit {
    /// The limit in bytes.
    pub fn bytes(self) -> usize {
        limit_from_byte(self.0)
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes())
    }
}

/// A framing configuration chosen by `arbitrary`.
#[derive(Clone, Copy, Arbitrary)]
pub struct FuzzConfig {
    /// Index into [`FramingKind::ALL`] (modulo its length).
    pub kind: u8,
    /// `max_frame` (and json-header `max_body`).
    pub max_frame: Limit,
    /// `max_line`.
    pub max_line: Limit,
    /// json-header `max_header`.
    pub max_header: Limit,
    /// Length-prefixed kinds: whether the length counts the prefix.
    pub length_includes_header: bool,
}

impl FuzzConfig {
    /// The framing configuration.
    pub fn framing(&self) -> FramingConfig {
        let mut config = FramingConfig::new(framing_kind(usize::from(self.kind)));
        config.max_frame = self.max_frame.bytes();
        config.max_line = self.max_line.bytes();
        config.max_header = self.max_header.bytes();
        config.length_includes_header = self.length_includes_header;
        config
    }
}

impl fmt::Debug for FuzzConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.framing().fmt(f)
    }
}

/// A read size: 1..=256 bytes.
#[derive(Clone, Copy, Arbitrary)]
pub struct ReadSize(pub u8);

impl ReadSize {
    /// The size in bytes.
    pub fn bytes(self) -> usize {
        usize::from(self.0) + 1
    }
}

impl fmt::Debug for ReadSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes())
    }
}

/// Damage done to an encoded stream: bytes overwritten, then maybe a cut.
#[derive(Debug, Clone, Arbitrary)]
pub struct Damage {
    /// (position modulo the stream length, new byte).
    pub writes: Vec<(u16, u8)>,
    /// Cut the stream at this position (modulo its length + 1).
    pub truncate: Option<u16>,
}

/// Input of the `round_trip` target.
#[derive(Debug, Clone, Arbitrary)]
pub struct RoundTripInput {
    /// The framing and its limits.
    pub config: FuzzConfig,
    /// Read sizes, cycled; none means one read of everything.
    pub reads: Vec<ReadSize>,
    /// Damage for the second half of the check; none skips it.
    pub damage: Option<Damage>,
    /// The messages to encode.
    pub messages: Vec<Vec<u8>>,
}

/// Checks that the encoder's refusal of `payload` is right: the error names
/// a real reason, and nothing was appended. Returns nothing; panics otherwise.
pub fn check_refusal(config: &FramingConfig, payload: &[u8], err: &FrameError) {
    let crlf_at = payload.windows(2).position(|w| w == b"\r\n");
    let justified = match err {
        FrameError::PayloadTooLarge {
            what: "JSON header",
            len,
            max,
            ..
        } => {
            // The header the encoder writes for a plain payload.
            let text = format!("{{\"file_size\":{}}}", payload.len());
            config.kind == FramingKind::JsonHeader
                && *len == text.len() as u64
                && len > max
                && *max == config.max_header.min(i32::MAX as usize) as u64
        }
        FrameError::PayloadTooLarge {
            len, max, limit, ..
        } => {
            *len == payload.len() as u64
                && len > max
                && match config.kind {
                    FramingKind::Line | FramingKind::Crlf => *max == config.max_line as u64,
                    FramingKind::Varint | FramingKind::JsonHeader => {
                        *max == config.max_frame as u64
                    }
                    kind => {
                        let prefix = kind.length_prefix().expect("length-prefixed");
                        let overhead = if config.length_includes_header {
                            prefix.width() as u64
                        } else {
                            0
                        };
                        let capacity = prefix.max_value() - overhead;
                        (*limit == "max_frame" && *max == config.max_frame as u64)
                            || *max == capacity
                    }
                }
        }
        FrameError::PayloadContainsTerminator { position, .. } => match config.kind {
            FramingKind::Line => {
                payload.iter().position(|&b| b == b'\n') == Some(*position as usize)
            }
            FramingKind::Crlf => crlf_at == Some(*position as usize),
            _ => false,
        },
        FrameError::PayloadEndsWithCr { .. } => {
            config.kind == FramingKind::Line && payload.last() == Some(&b'\r')
        }
        _ => false,
    };
    assert!(
        justified,
        "{config:?}: the encoder refused a {}-byte payload without a valid reason: {err}",
        payload.len()
    );
}

/// `round_trip`: encodes the messages the encoder accepts (checking each
/// refusal is right), decodes the stream in the given reads, all at once and
/// one byte at a time: each reading must give back exactly the accepted
/// messages, and a reader following `exact_read_hint` must never read past a
/// frame. Then, with `damage`, the damaged stream must decode the same way
/// (frames, errors with offsets, ending) under all three readings.
pub fn check_round_trip(input: &RoundTripInput) {
    let config = input.config.framing();
    let sizes: Vec<usize> = input.reads.iter().map(|r| r.bytes()).collect();
    let mut stream = BytesMut::new();
    let mut accepted: Vec<&[u8]> = Vec::new();
    let mut ends = Vec::new();
    for message in &input.messages {
        let before = stream.len();
        match config.encode(message, &mut stream) {
            Ok(()) => {
                accepted.push(message);
                ends.push(stream.len());
            }
            Err(err) => {
                assert_eq!(
                    stream.len(),
                    before,
                    "{config:?}: a refused frame left bytes"
                );
                assert_eq!(
                    err.offset(),
                    before as u64,
                    "{config:?}: encode error offset"
                );
                check_refusal(&config, message, &err);
            }
        }
    }
    let stream = stream.freeze();
    let bound = decode_bound(stream.len(), 3, codec_allowance(&config, stream.len()));
    within_budget("round_trip", bound, &budget_basis(&config, 3), || {
        let readings: [&[usize]; 3] = [&sizes, &[], &[1]];
        for reads in readings {
            let mut feed = frame_feed(&config, &stream, reads);
            for (i, expected) in accepted.iter().enumerate() {
                match feed.next_outcome() {
                    Some((Ok(frame), _)) => {
                        assert!(
                            &frame.payload[..] == *expected,
                            "{config:?}, reads {reads:?}: message #{i} came back different"
                        );
                        if config.kind == FramingKind::JsonHeader {
                            let header = frame.header.expect("json-header frames have a header");
                            assert_eq!(
                                header.get("file_size").and_then(Value::as_u64),
                                Some(expected.len() as u64)
                            );
                        }
                        assert_eq!(feed.codec.stream_offset(), ends[i] as u64, "frame end");
                    }
                    other => panic!(
                        "{config:?}, reads {reads:?}: message #{i} of {} decoded as {:?}",
                        accepted.len(),
                        other.map(|o| o.0)
                    ),
                }
            }
            let rest = feed.next_outcome();
            assert!(
                rest.is_none(),
                "{config:?}, reads {reads:?}: more after the last message: {:?}",
                rest.map(|o| o.0)
            );
        }
        check_read_hints(&config, &stream, &ends, &sizes);
        if let Some(damage) = &input.damage {
            let mut damaged = stream.to_vec();
            if !damaged.is_empty() {
                for &(at, byte) in &damage.writes {
                    let i = usize::from(at) % damaged.len();
                    damaged[i] = byte;
                }
            }
            if let Some(at) = damage.truncate {
                damaged.truncate(usize::from(at) % (damaged.len() + 1));
            }
            check_split_invariance(&config, &damaged, &[&[], &sizes, &[1]], None);
        }
    });
}

/// A reader that reads at most `exact_read_hint` bytes (capped by the read
/// sizes, as a socket may return less) never takes a byte of the next frame,
/// and each frame decodes exactly when its last byte arrives.
fn check_read_hints(config: &FramingConfig, stream: &[u8], ends: &[usize], sizes: &[usize]) {
    let mut codec = config.codec();
    let mut buf = BytesMut::new();
    let mut pos = 0;
    let mut caps = sizes
        .iter()
        .copied()
        .chain(std::iter::once(usize::MAX))
        .cycle();
    for &end in ends {
        loop {
            let decoded = codec.decode(&mut buf).unwrap_or_else(|e| {
                panic!("{config:?}: hint-driven reading failed on a valid stream: {e}")
            });
            if decoded.is_some() {
                break;
            }
            let hint = codec.exact_read_hint(&buf);
            assert_eq!(
                hint,
                config.exact_read_hint(&buf),
                "codec and config hints differ"
            );
            assert!(
                hint >= 1,
                "{config:?}: hint 0 while the frame is incomplete"
            );
            let n = hint.min(caps.next().unwrap_or(1)).max(1);
            assert!(
                pos + n <= end,
                "{config:?}: hint {hint} at offset {pos} reads past the frame end {end}"
            );
            buf.extend_from_slice(&stream[pos..pos + n]);
            pos += n;
        }
        assert_eq!(pos, end, "{config:?}: a frame decoded before its last byte");
        assert!(
            buf.is_empty(),
            "{config:?}: bytes left after a hinted frame"
        );
    }
}

/// A JSON value for a header, at most 3 levels deep, without floats (whose
/// text form serde_json does not promise to read back bit for bit).
#[derive(Debug, Clone)]
pub struct HeaderValue(pub Value);

const HEADER_VALUE_DEPTH: usize = 3;

fn header_value(u: &mut Unstructured<'_>, depth: usize) -> arbitrary::Result<Value> {
    let choices = if depth >= HEADER_VALUE_DEPTH { 5 } else { 7 };
    Ok(match u.int_in_range(0..=choices - 1)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => Value::String(u.arbitrary()?),
        5 => {
            let mut items = Vec::new();
            u.arbitrary_loop(Some(0), Some(8), |u| {
                items.push(header_value(u, depth + 1)?);
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
            Value::Array(items)
        }
        _ => {
            let mut map = Map::new();
            u.arbitrary_loop(Some(0), Some(8), |u| {
                let key: String = u.arbitrary()?;
                map.insert(key, header_value(u, depth + 1)?);
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
            Value::Object(map)
        }
    })
}

impl<'a> Arbitrary<'a> for HeaderValue {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        header_value(u, 1).map(HeaderValue)
    }
}

/// The `file_size` member a test header gets.
#[derive(Debug, Clone, Arbitrary)]
pub enum FileSizeField {
    /// Left out: the encoder adds it.
    Absent,
    /// The body's length.
    Right,
    /// Some number (usually wrong).
    Number(u64),
    /// Not a number at all.
    Other(HeaderValue),
}

/// One json-header frame to send.
#[derive(Debug, Clone, Arbitrary)]
pub struct JsonFrameInput {
    /// Header members besides `file_size`.
    pub fields: Vec<(String, HeaderValue)>,
    /// How `file_size` appears.
    pub file_size: FileSizeField,
    /// The body.
    pub body: Vec<u8>,
}

impl JsonFrameInput {
    /// The header map to encode.
    pub fn header(&self) -> Map<String, Value> {
        let mut map = Map::new();
        for (key, value) in &self.fields {
            map.insert(key.clone(), value.0.clone());
        }
        match &self.file_size {
            FileSizeField::Absent => {}
            FileSizeField::Right => {
                map.insert("file_size".into(), Value::from(self.body.len()));
            }
            FileSizeField::Number(n) => {
                map.insert("file_size".into(), Value::from(*n));
            }
            FileSizeField::Other(value) => {
                map.insert("file_size".into(), value.0.clone());
            }
        }
        map
    }
}

/// Input of the `json_header_round_trip` target.
#[derive(Debug, Clone, Arbitrary)]
pub struct JsonRoundTripInput {
    /// `max_header`.
    pub max_header: Limit,
    /// `max_body`.
    pub max_body: Limit,
    /// Read sizes, cycled.
    pub reads: Vec<ReadSize>,
    /// The frames.
    pub frames: Vec<JsonFrameInput>,
}

/// `json_header_round_trip`: encodes each frame with its own header (checking
/// each refusal: body over `max_body`, header text over `max_header`, a
/// `file_size` that is not the body's length), decodes in the given reads and
/// all at once: every accepted frame comes back with the same header (plus
/// `file_size`), body and wire bytes.
pub fn check_json_header_round_trip(input: &JsonRoundTripInput) {
    let (max_header, max_body) = (input.max_header.bytes(), input.max_body.bytes());
    let sizes: Vec<usize> = input.reads.iter().map(|r| r.bytes()).collect();
    let mut encoder = JsonHeaderCodec::new()
        .with_max_header(max_header)
        .with_max_body(max_body);
    let mut stream = BytesMut::new();
    let mut accepted = Vec::new();
    for frame in &input.frames {
        let header = frame.header();
        let before = stream.len();
        match encoder.encode_with_header(&header, &frame.body, &mut stream) {
            Ok(()) => {
                let mut expected = header;
                expected
                    .entry("file_size")
                    .or_insert_with(|| Value::from(frame.body.len()));
                accepted.push((expected, &frame.body[..], before..stream.len()));
            }
            Err(err) => {
                assert_eq!(stream.len(), before, "a refused frame left bytes");
                assert_eq!(err.offset(), before as u64, "encode error offset");
                let justified = match &err {
                    FrameError::PayloadTooLarge {
                        what: "body", len, ..
                    } => *len as usize == frame.body.len() && frame.body.len() > max_body,
                    FrameError::PayloadTooLarge {
                        what: "JSON header",
                        len,
                        max,
                        ..
                    } => len > max && *max as usize == max_header.min(i32::MAX as usize),
                    FrameError::FileSizeMismatch { .. } => {
                        header.get("file_size").and_then(Value::as_u64)
                            != Some(frame.body.len() as u64)
                    }
                    _ => false,
                };
                assert!(
                    justified,
                    "the encoder refused a frame without a valid reason: {err}"
                );
            }
        }
    }
    let stream = stream.freeze();
    let config = {
        let mut c = FramingConfig::new(FramingKind::JsonHeader);
        c.max_header = max_header;
        c.max_frame = max_body;
        c
    };
    let bound = decode_bound(stream.len(), 1, codec_allowance(&config, stream.len()));
    within_budget(
        "json_header_round_trip",
        bound,
        &budget_basis(&config, 1),
        || {
            for reads in [&sizes[..], &[]] {
                let codec = JsonHeaderCodec::new()
                    .with_max_header(max_header)
                    .with_max_body(max_body);
                let mut feed = Feed::new(codec, &stream, reads, frame_error_recoverable);
                for (i, (header, body, wire)) in accepted.iter().enumerate() {
                    match feed.next_outcome() {
                        Some((Ok(frame), _)) => {
                            assert_eq!(&frame.header, header, "frame #{i} header");
                            assert_eq!(&frame.body[..], *body, "frame #{i} body");
                            assert_eq!(&frame.wire_bytes()[..], &stream[wire.clone()], "wire");
                        }
                        other => panic!(
                            "frame #{i} of {} decoded as {:?} (reads {reads:?})",
                            accepted.len(),
                            other.map(|o| o.0)
                        ),
                    }
                }
                assert!(feed.next_outcome().is_none(), "more after the last frame");
            }
        },
    );
}

// ---------------------------------------------------------------------------
// Differential targets
// ---------------------------------------------------------------------------

/// A frame or an error class, the common ground of two codecs' outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffOutcome {
    /// A frame's payload.
    Frame(Vec<u8>),
    /// A length or line above the maximum.
    TooLong,
    /// The stream ended inside a frame or line.
    Truncated,
    /// Any other error.
    Other,
}

fn diff_frame_error(err: &FrameError) -> DiffOutcome {
    match err {
        FrameError::TooLarge { .. } | FrameError::LineTooLong { .. } => DiffOutcome::TooLong,
        // tokio-util reads an i32 prefix as unsigned: a negative length is a
        // length of at least 2^31, above every max_frame the target uses.
        FrameError::NegativeLength { .. } => DiffOutcome::TooLong,
        FrameError::Truncated { .. } | FrameError::UnterminatedLine { .. } => {
            DiffOutcome::Truncated
        }
        _ => DiffOutcome::Other,
    }
}

fn never_recoverable<E>(_: &E) -> bool {
    false
}

/// The largest `max_frame` the length differential uses: tokio-util reserves a
/// claimed frame whole, like wirecheck, and must stay within the budget too.
pub const DIFF_MAX_FRAME: usize = 1 << 20;

/// `length_vs_tokio`: byte 0 picks the prefix (mod 9) and, in bit 4,
/// `length_includes_header`; byte 1 is `max_frame` (capped, see below); byte
/// 2 the read sizes; the rest the stream. wirecheck's `LengthPrefixedCodec` and
/// tokio-util's `LengthDelimitedCodec` built alike (`length_field_length`,
/// endianness, `max_frame_length`, `length_adjustment = -width` for
/// `length_includes_header`) must give the same frames and the same class of
/// error ([`DiffOutcome`]) under the same reads.
///
/// By-design differences normalised here (see FUZZING.md):
/// * tokio-util bounds the length as read, wirecheck bounds the payload: with
///   `length_includes_header` tokio-util gets `max_frame + width`;
/// * tokio-util clamps `max_frame_length` to the field's largest value plus
///   the adjustment, so with `length_includes_header` `max_frame` stays at or
///   below the field's largest value minus twice the width;
/// * tokio-util has no signed lengths: wirecheck's negative-length error
///   counts as "too long" (the unsigned reading is at least 2^31, above every
///   `max_frame` used, capped at [`DIFF_MAX_FRAME`]).
pub fn check_length_vs_tokio(data: &[u8]) {
    let mut knobs = Knobs::new(data);
    let b0 = knobs.byte();
    let prefix = LengthPrefix::ALL[usize::from(b0) % LengthPrefix::ALL.len()];
    let includes_header = b0 & 0x10 != 0;
    let width = prefix.width();
    let mut max_frame = limit_from_byte(knobs.byte()).min(DIFF_MAX_FRAME);
    if includes_header {
        let field_max = prefix.max_value().min(u64::from(u32::MAX)) as usize;
        max_frame = max_frame.min(field_max - 2 * width);
    }
    let sizes = chunk_sizes(knobs.byte());
    let stream = knobs.rest();

    let ours = LengthPrefixedCodec::new(prefix)
        .with_max_frame(max_frame)
        .with_length_includes_header(includes_header);
    let big_endian = matches!(
        prefix,
        LengthPrefix::U16Be | LengthPrefix::U32Be | LengthPrefix::I32Be | LengthPrefix::U64Be
    );
    let mut builder = LengthDelimitedCodec::builder();
    builder.length_field_length(width);
    if big_endian {
        builder.big_endian();
    } else {
        builder.little_endian();
    }
    if includes_header {
        builder
            .max_frame_length(max_frame + width)
            .length_adjustment(-(width as isize));
    } else {
        builder.max_frame_length(max_frame);
    }
    let theirs = builder.new_codec();
    let what = format!(
        "{} max_frame {max_frame} length_includes_header {includes_header}",
        prefix.name()
    );
    let bound = decode_bound(stream.len(), 2, max_frame + width);
    within_budget("length_vs_tokio", bound, &what, || {
        let mut a = Feed::new(ours, stream, &sizes, frame_error_recoverable);
        let mut b = Feed::new(theirs, stream, &sizes, never_recoverable);
        let mut index = 0;
        loop {
            let x = a.next_outcome().and_then(|(r, _)| match r {
                Ok(frame) => Some(DiffOutcome::Frame(frame.to_vec())),
                // tokio-util takes a prefix out of the buffer as soon as it is
                // read, so a stream ending right after one (no payload byte)
                // ends cleanly for it.
                Err(FrameError::Truncated {
                    have,
                    expected: Some(_),
                    ..
                }) if have == width as u64 => None,
                Err(err) => Some(diff_frame_error(&err)),
            });
            let y = b.next_outcome().map(|(r, phase)| match r {
                Ok(frame) => DiffOutcome::Frame(frame.to_vec()),
                Err(err) => tokio_length_error(&err, phase),
            });
            assert_eq!(
                x,
                y,
                "{what}, reads {sizes:?}: outcome #{index} differs (left wirecheck, right \
                 tokio-util)\nstream: {}",
                Head(stream)
            );
            if x.is_none() {
                break;
            }
            index += 1;
        }
    });
}

fn tokio_length_error(err: &std::io::Error, phase: Phase) -> DiffOutcome {
    let too_big = err
        .get_ref()
        .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>());
    if err.kind() == std::io::ErrorKind::InvalidData && too_big {
        DiffOutcome::TooLong
    } else if phase == Phase::Eof && err.kind() == std::io::ErrorKind::Other {
        // Decoder::decode_eof's default: "bytes remaining on stream".
        DiffOutcome::Truncated
    } else {
        DiffOutcome::Other
    }
}

/// Rewrites a line stream so wirecheck's LF codec and tokio-util's
/// `LinesCodec` with `max_length = max_line` must agree (see FUZZING.md):
///
/// * tokio-util counts a CR before the LF towards `max_length`, wirecheck does
///   not: a line of exactly `max_line + 1` bytes before its LF (or before the
///   end of the stream) whose last byte is CR has that CR replaced by `r`;
/// * at the end of the stream, tokio-util calls `max_line + 1` unterminated
///   bytes too long, wirecheck (which needs `max_line + 2` bytes to be sure
///   without a terminator) calls them unterminated: a last unterminated line
///   of exactly `max_line + 1` bytes loses its last byte.
pub fn normalise_for_lines_codec(stream: &mut Vec<u8>, max_line: usize) {
    let mut start = 0;
    while start < stream.len() {
        let end = stream[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(stream.len(), |i| start + i);
        if end - start == max_line.saturating_add(1) && stream[end - 1] == b'\r' {
            stream[end - 1] = b'r';
        }
        if end == stream.len() {
            if end - start == max_line.saturating_add(1) {
                stream.pop();
            }
            break;
        }
        start = end + 1;
    }
}

/// `lines_vs_tokio`: byte 0 is `max_line` (255 means unlimited: `usize::MAX`
/// for both), byte 1 the read sizes, the rest the stream, normalised by
/// [`normalise_for_lines_codec`]. wirecheck's LF `LineCodec` and tokio-util's
/// `LinesCodec::new_with_max_length` must give the same lines and the same
/// classes of error, carrying on after recoverable ones:
///
/// * a line that is not UTF-8 is an error for tokio-util (and decoding goes
///   on), a frame for wirecheck: wirecheck's non-UTF-8 lines count as `Other`;
/// * an unterminated last line is a line for tokio-util (no line at all if it
///   is a lone CR), an error for wirecheck: both count as `Truncated`.
pub fn check_lines_vs_tokio(data: &[u8]) {
    let mut knobs = Knobs::new(data);
    let b0 = knobs.byte();
    let max_line = if b0 == 255 {
        usize::MAX
    } else {
        limit_from_byte(b0)
    };
    let sizes = chunk_sizes(knobs.byte());
    let mut stream = knobs.rest().to_vec();
    normalise_for_lines_codec(&mut stream, max_line);
    let stream = &stream[..];
    let ours = LineCodec::lf().with_max_line(max_line);
    let theirs = LinesCodec::new_with_max_length(max_line);
    let what = format!("LF lines, max_line {max_line}");
    let allowance = max_line.min(stream.len()).saturating_add(2);
    let bound = decode_bound(stream.len(), 2, allowance);
    within_budget("lines_vs_tokio", bound, &what, || {
        let mut a = Feed::new(ours, stream, &sizes, frame_error_recoverable);
        let mut b = Feed::new(theirs, stream, &sizes, |e: &LinesCodecError| {
            // An over-long line and a line that is not UTF-8 are both skipped.
            matches!(e, LinesCodecError::MaxLineLengthExceeded)
                || matches!(e, LinesCodecError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData)
        });
        let mut index = 0;
        loop {
            let x = a.next_outcome().map(|(r, _)| match r {
                Ok(line) if std::str::from_utf8(&line).is_ok() => DiffOutcome::Frame(line.to_vec()),
                Ok(_) => DiffOutcome::Other,
                Err(err) => diff_frame_error(&err),
            });
            let mut y = b.next_outcome().map(|(r, phase)| match (r, phase) {
                (Ok(_) | Err(LinesCodecError::Io(_)), Phase::Eof) => DiffOutcome::Truncated,
                (Ok(line), _) => DiffOutcome::Frame(line.into_bytes()),
                (Err(LinesCodecError::MaxLineLengthExceeded), _) => DiffOutcome::TooLong,
                (Err(LinesCodecError::Io(_)), _) => DiffOutcome::Other,
            });
            if y.is_none() && !b.buf.is_empty() {
                // tokio-util leaves a lone CR at the end unreported.
                assert_eq!(&b.buf[..], b"\r", "tokio-util left bytes behind");
                b.buf.clear();
                y = Some(DiffOutcome::Truncated);
            }
            assert_eq!(
                x,
                y,
                "{what}, reads {sizes:?}: outcome #{index} differs (left wirecheck, right \
                 tokio-util)\nstream: {}",
                Head(stream)
            );
            if x.is_none() {
                break;
            }
            index += 1;
        }
    });
}

// ---------------------------------------------------------------------------
// Scenario parser
// ---------------------------------------------------------------------------

/// Where the scenario target pretends its input lives: a folder that does not
/// exist, so relative `file = ...` data cannot read anything.
pub const SCENARIO_PATH: &str = "/nonexistent-wirecheck-fuzz/scenario.toml";

/// The most data the scenario target lets one input ask for through `repeat`
/// and `times` (a scenario may legitimately declare up to 1 GiB per step).
pub const SCENARIO_DECLARED_DATA_CAP: usize = 16 << 20;

/// Why the scenario target skips an input: what it would make the loader do is
/// outside what a fuzzer may do here (read absolute paths such as /dev/zero)
/// or is a documented allowance (big `repeat` data), not a bug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioSkip {
    /// A `file` data key with an absolute path.
    AbsoluteFile(String),
    /// More `repeat` x `times` data than [`SCENARIO_DECLARED_DATA_CAP`].
    BigRepeat(u128),
}

/// Looks through a TOML document for what [`ScenarioSkip`] describes; also
/// returns how much `repeat` data it declares (for the budget). Text that is
/// not TOML passes: the loader must report it.
pub fn scenario_prescan(text: &str) -> Result<usize, ScenarioSkip> {
    use toml_edit::{ImDocument, Item, Value as Toml};

    #[derive(Clone, Copy)]
    enum Node<'a> {
        Item(&'a Item),
        Value(&'a Toml),
    }

    fn value<'a>(node: Node<'a>) -> Option<&'a Toml> {
        match node {
            Node::Item(item) => item.as_value(),
            Node::Value(value) => Some(value),
        }
    }

    fn walk(node: Node<'_>, total: &mut u128) -> Result<(), ScenarioSkip> {
        let entries: Vec<(&str, Node<'_>)> = match node {
            Node::Item(Item::Table(t)) => t.iter().map(|(k, v)| (k, Node::Item(v))).collect(),
            Node::Item(Item::Value(Toml::InlineTable(t))) | Node::Value(Toml::InlineTable(t)) => {
                t.iter().map(|(k, v)| (k, Node::Value(v))).collect()
            }
            Node::Item(Item::ArrayOfTables(a)) => {
                for t in a.iter() {
                    for (_, v) in t.iter() {
                        walk(Node::Item(v), total)?;
                    }
                    walk_entries(t.iter().map(|(k, v)| (k, Node::Item(v))).collect(), total)?;
                }
                return Ok(());
            }
            Node::Item(Item::Value(Toml::Array(a))) | Node::Value(Toml::Array(a)) => {
                for v in a.iter() {
                    walk(Node::Value(v), total)?;
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        for (_, child) in &entries {
            walk(*child, total)?;
        }
        walk_entries(entries, total)
    }

    fn walk_entries(entries: Vec<(&str, Node<'_>)>, total: &mut u128) -> Result<(), ScenarioSkip> {
        let mut repeat_len = None;
        let mut times = None;
        for (key, node) in entries {
            match (key, value(node)) {
                ("file", Some(Toml::String(s))) if Path::new(s.value()).has_root() => {
                    return Err(ScenarioSkip::AbsoluteFile(s.value().clone()));
                }
                ("repeat", Some(Toml::String(s))) => repeat_len = Some(s.value().len()),
                ("times", Some(Toml::Integer(i))) => times = Some(*i.value()),
                _ => {}
            }
        }
        if let (Some(len), Some(times)) = (repeat_len, times) {
            *total += len as u128 * u128::from(times.max(0).unsigned_abs());
            if *total > SCENARIO_DECLARED_DATA_CAP as u128 {
                return Err(ScenarioSkip::BigRepeat(*total));
            }
        }
        Ok(())
    }

    let Ok(doc) = ImDocument::parse(text) else {
        return Ok(0);
    };
    let mut total = 0u128;
    walk(Node::Item(doc.as_item()), &mut total)?;
    Ok(total as usize)
}

/// Bytes the loader may allocate per byte of scenario text (TOML document,
/// spans, the model, diagnostics), on top of the data the file declares.
pub const SCENARIO_TEXT_FACTOR: usize = 256;

/// `scenario_parse`: arbitrary bytes that are UTF-8 go to `load_str` (under a
/// path in a folder that does not exist); it must not panic; every diagnostic
/// of an invalid file has a span within the text, on character boundaries,
/// and a message; and rendering the error does not panic and names the file.
pub fn check_scenario_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(declared) = scenario_prescan(text) else {
        return;
    };
    let bound = text
        .len()
        .saturating_mul(SCENARIO_TEXT_FACTOR)
        .saturating_add(declared.saturating_mul(3))
        .saturating_add(BUDGET_SLACK);
    let basis = format!(
        "{SCENARIO_TEXT_FACTOR} x {} bytes of text + 3 x {declared} bytes of declared data + 1 MiB",
        text.len()
    );
    check_tree_agrees_with_toml(text);
    check_direct_reader_agrees(text);
    within_budget("scenario_parse", bound, &basis, || {
        match load_str(Path::new(SCENARIO_PATH), text) {
            Ok(scenario) => {
                assert_eq!(&*scenario.source, text, "the scenario keeps its source");
            }
            Err(err) => check_load_error(text, &err),
        }
    });
}

/// The loader reads everyday scenario files directly and everything else through
/// `toml_parser`'s token list; whenever the direct reader takes a document, its tree
/// (spans included) must be the token list's, and it must never take a document the
/// token list refuses.
pub fn check_direct_reader_agrees(text: &str) {
    let (direct_arena, full_arena) = (tree::Arena::new(), tree::Arena::new());
    if let Some(direct) = tree::parse_direct(text, &direct_arena) {
        match tree::parse_with_token_list(text, &full_arena) {
            Ok(full) => assert_eq!(direct, full, "the readers' trees differ for {text:?}"),
            Err(e) => panic!(
                "the direct reader takes what the full parser refuses ({}): {text:?}",
                e.message
            ),
        }
    }
}

/// The loader's own TOML tree (built from `toml_parser` events, with TOML's rules
/// for tables and keys written in wirecheck) against the `toml` crate's `DeTable`
/// on the same text: both accept or both refuse, and an accepted document gives the
/// same keys and values. Entry order is not compared (`toml` moves a table defined
/// after its children to the end of its parent), nor are spans. Documents nested
/// past either side's depth limit are skipped: the limits differ on purpose.
pub fn check_tree_agrees_with_toml(text: &str) {
    let arena = tree::Arena::new();
    let ours = tree::parse(text, &arena);
    let reference = toml::de::DeTable::parse(text);
    match (&ours, &reference) {
        (Ok(ours), Ok(reference)) => {
            let reference = canonical_toml(&toml::de::DeValue::Table(reference.get_ref().clone()));
            assert_eq!(
                canonical_tree(ours),
                reference,
                "the trees differ for {text:?}"
            );
        }
        (Err(ours), Err(_)) => {
            assert!(ours.span.end <= text.len(), "error span outside the text");
        }
        // Depth limits differ on purpose, and `DeTable` keeps integers as text
        // (range errors come later, when deserializing).
        (Err(ours), Ok(_)) if ours.message.contains("nested") => {}
        (Err(ours), Ok(_)) if ours.message.contains("out of range") => {}
        (Ok(_), Err(e)) if e.message().contains("recurs") => {}
        (Ok(_), Err(e)) => panic!(
            "toml refuses ({}) what the tree accepts: {text:?}",
            e.message()
        ),
        (Err(ours), Ok(_)) => {
            panic!(
                "the tree refuses ({}) what toml accepts: {text:?}",
                ours.message
            )
        }
    }
}

/// A comparable form of a tree: tables as sorted (key, value) lists.
fn canonical_tree(node: &tree::Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        tree::NodeKind::Str(s) => Value::String(s.to_string()),
        tree::NodeKind::Int(i) => Value::from(*i),
        tree::NodeKind::Float(_) => Value::String("<float>".into()),
        tree::NodeKind::Bool(b) => Value::Bool(*b),
        tree::NodeKind::Datetime => Value::String("<datetime>".into()),
        tree::NodeKind::Array(items) => Value::Array(items.iter().map(canonical_tree).collect()),
        tree::NodeKind::Table(entries) => {
            let mut pairs: Vec<Value> = entries
                .iter()
                .map(|e| {
                    Value::Array(vec![
                        Value::String(e.key.to_string()),
                        canonical_tree(&e.value),
                    ])
                })
                .collect();
            pairs.sort_by_key(|p| p.to_string());
            Value::Array(vec![Value::String("<table>".into()), Value::Array(pairs)])
        }
    }
}

fn canonical_toml(value: &toml::de::DeValue<'_>) -> serde_json::Value {
    use serde_json::Value;
    use toml::de::DeValue;
    match value {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(i) => Value::from(i),
            Err(_) => Value::String("<out of range>".into()),
        },
        DeValue::Float(_) => Value::String("<float>".into()),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(_) => Value::String("<datetime>".into()),
        DeValue::Array(items) => {
            Value::Array(items.iter().map(|i| canonical_toml(i.get_ref())).collect())
        }
        DeValue::Table(table) => {
            let mut pairs: Vec<Value> = table
                .iter()
                .map(|(k, v)| {
                    Value::Array(vec![
                        Value::String(k.get_ref().to_string()),
                        canonical_toml(v.get_ref()),
                    ])
                })
                .collect();
            pairs.sort_by_key(|p| p.to_string());
            Value::Array(vec![Value::String("<table>".into()), Value::Array(pairs)])
        }
    }
}

/// Checks a loader error: spans inside the text on character boundaries, a
/// message each, and a rendering that names the file.
pub fn check_load_error(text: &str, err: &LoadError) {
    match err {
        LoadError::Io { .. } => panic!("load_str reported an I/O error: {err}"),
        LoadError::Invalid {
            source,
            diagnostics,
            ..
        } => {
            assert_eq!(&**source, text, "the error keeps the source");
            assert!(
                !diagnostics.is_empty(),
                "an invalid file without a diagnostic"
            );
            for d in diagnostics {
                assert!(
                    d.span.start <= d.span.end && d.span.end <= text.len(),
                    "diagnostic span {:?} outside the {}-byte file: {}",
                    d.span,
                    text.len(),
                    d.message
                );
                assert!(
                    text.is_char_boundary(d.span.start) && text.is_char_boundary(d.span.end),
                    "diagnostic span {:?} splits a character: {}",
                    d.span,
                    d.message
                );
                assert!(
                    !d.message.trim().is_empty(),
                    "a diagnostic without a message"
                );
            }
        }
    }
    let rendered = err.render();
    assert!(
        rendered.contains(SCENARIO_PATH) || rendered.contains("scenario.toml"),
        "the rendered error does not name the file:\n{rendered}"
    );
    let _ = err.to_string();
}

// ---------------------------------------------------------------------------
// Trace importer
// ---------------------------------------------------------------------------

/// The importer's fixed allocations whatever the input: its 64 KiB read buffer.
pub const IMPORT_READ_BUFFER: usize = 64 << 10;

/// Bytes the importer may allocate per byte of trace, on top of the read buffer:
/// blocks, reassembly (fragments, out-of-order segments, the payload store), the
/// generated scenario text (hex escapes) and its check by the loader. Nothing is
/// sized from a length field without the bytes behind it having arrived.
pub const TRACE_FACTOR: usize = 256;

/// `trace_import`: arbitrary bytes as a pcap or pcapng file go through
/// `trace::import::import_from`; it must not panic; an import that succeeds
/// produced a scenario the loader accepts (the importer checks that itself,
/// and reports a failure as `ImportError::Invalid`, which is a bug here).
pub fn check_trace_import(data: &[u8]) {
    use wirecheck::trace::import::{import_from, ImportError, ImportOptions};
    let bound = IMPORT_READ_BUFFER
        .saturating_add(data.len().saturating_mul(TRACE_FACTOR))
        .saturating_add(BUDGET_SLACK);
    let basis = format!(
        "64 KiB read buffer + {TRACE_FACTOR} x {} input bytes + 1 MiB",
        data.len()
    );
    within_budget("trace_import", bound, &basis, || {
        match import_from(data, Path::new("fuzz.pcap"), &ImportOptions::default()) {
            Ok(imported) => assert!(!imported.toml.is_empty(), "an empty scenario"),
            Err(ImportError::Invalid(report)) => {
                panic!("the importer wrote a scenario its loader rejects:\n{report}")
            }
            Err(err) => {
                let _ = err.to_string();
            }
        }
    });
}

/// The framing kind at `index` (modulo the number of kinds), in declaration order:
/// the mapping the committed seeds were made with.
fn framing_kind(index: usize) -> FramingKind {
    let count = FramingKind::all().count();
    FramingKind::all()
        .nth(index % count)
        .expect("the index is below the count")
}

// ---------------------------------------------------------------------------
// Matchers: chunked streams against whole buffers
// ---------------------------------------------------------------------------

/// A stream, the sizes of the reads it arrives in, and what to look for.
#[derive(Debug, Arbitrary)]
pub struct MatcherChunksInput {
    /// 0: a regex (`pattern`), 1: `contains` (`pattern`'s bytes), 2: a line.
    pub kind: u8,
    pub pattern: String,
    /// Read sizes (0 counts as 1); the last repeats.
    pub reads: Vec<u8>,
    pub stream: Vec<u8>,
}

/// Feeds `input.stream` to the stream matcher (or the line splitter) read by read,
/// as `expect` and `expect_line` do, and checks the verdict against matching whole
/// buffers at once:
///
/// * regex: the step matches at the first read after which the bytes so far hold a
///   match (`Regex::find` on them), and consumes through that match's end, with
///   the same captures; a stream that never matches is never reported as matched,
///   and an early failure (the DFA went dead) means the whole stream holds no match;
/// * `contains`: consumes through the end of the needle's first occurrence in the
///   whole stream, whatever the reads;
/// * a line ends at the whole stream's first LF, its CR stripped.
pub fn check_matcher_chunks(input: &MatcherChunksInput) {
    // A compiled regex may take up to the regex crate's size limits (10 MiB for
    // the program, 2 MiB of lazy DFA cache, twice: matcher and reference).
    within_budget(
        "matcher_chunks",
        64 << 20,
        "the regex crate's limits for two compiled regexes + 1 MiB",
        || matcher_chunks(input),
    )
}

fn matcher_chunks(input: &MatcherChunksInput) {
    use wirecheck::matcher::{LineSplitter, Match, MatchSpec, Progress};
    let stream = &input.stream[..input.stream.len().min(4096)];
    let mut ends = Vec::new();
    let mut at = 0;
    let mut sizes = input.reads.iter().map(|&r| usize::from(r).max(1));
    let mut last = 1;
    while at < stream.len() {
        let size = sizes.next().unwrap_or(last);
        last = size;
        at = (at + size).min(stream.len());
        ends.push(at);
    }
    match input.kind % 3 {
        0 => {
            let Ok(whole) = regex::bytes::Regex::new(&input.pattern) else {
                return;
            };
            let Ok(matcher) = Match::compile(MatchSpec::Regex(input.pattern.clone())) else {
                return;
            };
            assert_eq!(
                matcher.match_whole(stream).is_ok(),
                whole.is_match(stream),
                "match_whole disagrees with the regex on the whole stream"
            );
            let mut judge = matcher.stream(usize::MAX);
            for &end in &ends {
                let expected = whole.find(&stream[..end]).map(|m| m.end());
                match judge.advance(&stream[..end]) {
                    Progress::Matched { consumed, captures } => {
                        assert_eq!(Some(consumed), expected, "matched at read end {end}");
                        let found = whole.captures(&stream[..end]).unwrap();
                        for (name, value) in captures.iter() {
                            assert_eq!(found.name(name).map(|m| m.as_bytes()), Some(&value[..]));
                        }
                        return;
                    }
                    Progress::NeedMore { .. } => {
                        assert_eq!(
                            expected, None,
                            "a match in the first {end} bytes was missed"
                        );
                    }
                    Progress::Failed(why) => {
                        assert!(
                            !whole.is_match(stream),
                            "gave up at {end} ({why}) on a stream that matches"
                        );
                        return;
                    }
                }
            }
        }
        1 => {
            let needle = input.pattern.as_bytes();
            if needle.is_empty() {
                return;
            }
            let matcher = Match::Contains(Bytes::copy_from_slice(needle));
            let expected = memmem(stream, needle).map(|at| at + needle.len());
            let mut judge = matcher.stream(usize::MAX);
            let mut got = None;
            for &end in &ends {
                if let Progress::Matched { consumed, .. } = judge.advance(&stream[..end]) {
                    got = Some(consumed);
                    break;
                }
            }
            assert_eq!(got, expected, "contains {needle:?}");
        }
        _ => {
            let mut lines = LineSplitter::default();
            let lf = stream.iter().position(|&b| b == b'\n');
            let mut got = None;
            for &end in &ends {
                match lines.advance(&stream[..end]) {
                    Ok(Some(line)) => {
                        got = Some(line);
                        break;
                    }
                    Ok(None) => {}
                    Err(_) => return,
                }
            }
            match (lf, got) {
                (Some(lf), Some(line)) => {
                    assert_eq!(line.consumed, lf + 1);
                    let cr = lf > 0 && stream[lf - 1] == b'\r';
                    assert_eq!(line.content, if cr { lf - 1 } else { lf });
                }
                (None, None) => {}
                (lf, got) => panic!("line end {lf:?}, splitter {got:?}"),
            }
        }
    }
}

fn memmem(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------
// proxy_pipeline
// ---------------------------------------------------------------------------

/// A fault that never drops data, with small parameters (times in microseconds).
#[derive(Debug, Clone, Arbitrary)]
pub enum FuzzFault {
    Slice { min: u8, max: u8, delay_us: u16 },
    Coalesce { bytes: u16, window_us: u16 },
    Latency { delay_us: u16, jitter_us: u16 },
    Bandwidth { bytes_per_second: u32 },
    SlowClose { delay_us: u16 },
}

/// One thing that happens to a pipeline: bytes arrive, or time passes, each after
/// `wait_us` of virtual time; the consumer takes what is due after every step.
#[derive(Debug, Clone, Arbitrary)]
pub enum FuzzOp {
    Push { wait_us: u16, bytes: Vec<u8> },
    Advance { wait_us: u16 },
}

/// Input of the `proxy_pipeline` target.
#[derive(Debug, Clone, Arbitrary)]
pub struct ProxyPipelineInput {
    pub seed: u64,
    pub faults: Vec<FuzzFault>,
    pub ops: Vec<FuzzOp>,
}

/// At most this many faults and operations of an input are used, so one input
/// stays fast however long the fuzzer makes it.
const MAX_FUZZ_FAULTS: usize = 8;
const MAX_FUZZ_OPS: usize = 512;

/// Drives the TCP fault pipeline (slice, coalesce, latency with jitter, bandwidth,
/// slow_close) with a virtual clock and checks, for faults that never drop data:
/// the bytes out are the bytes in, in order; pieces leave in time order and never
/// before they are due; the close comes once, last; nothing is held at the end; and
/// the pipeline's memory stays within a bound of the bytes pushed.
pub fn check_proxy_pipeline(input: &ProxyPipelineInput) {
    use std::time::Duration;
    use wirecheck::proxy::pipeline::{PieceKind, Pipeline, StageSpec};
    use wirecheck::proxy::rng::FaultRng;
    use wirecheck::proxy::FaultKind;

    let us = |n: u16| Duration::from_micros(u64::from(n));
    let faults: Vec<StageSpec> = input
        .faults
        .iter()
        .take(MAX_FUZZ_FAULTS)
        .map(|fault| StageSpec {
            kind: match *fault {
                FuzzFault::Slice { min, max, delay_us } => {
                    let min = usize::from(min.max(1));
                    FaultKind::Slice {
                        min,
                        max: usize::from(max).max(min),
                        delay: us(delay_us),
                    }
                }
                FuzzFault::Coalesce { bytes, window_us } => FaultKind::Coalesce {
                    bytes: usize::from(bytes.max(1)),
                    window: us(window_us),
                },
                FuzzFault::Latency {
                    delay_us,
                    jitter_us,
                } => FaultKind::Latency {
                    delay: us(delay_us),
                    jitter: us(jitter_us),
                },
                FuzzFault::Bandwidth { bytes_per_second } => FaultKind::Bandwidth {
                    // At least 1 KB/s, so a run of the virtual clock stays short.
                    bytes_per_second: u64::from(bytes_per_second.max(1000)),
                    shared: false,
                },
                FuzzFault::SlowClose { delay_us } => FaultKind::SlowClose(us(delay_us)),
            },
            link: None,
        })
        .collect();
    let pushed: usize = input
        .ops
        .iter()
        .take(MAX_FUZZ_OPS)
        .map(|op| match op {
            FuzzOp::Push { bytes, .. } => bytes.len(),
            FuzzOp::Advance { .. } => 0,
        })
        .sum();
    // Pieces of at least one byte, each with a small header, plus notes.
    let bound = pushed.saturating_mul(160).saturating_add(BUDGET_SLACK);
    let basis = format!("160 x {pushed} pushed bytes + 1 MiB");
    within_budget("proxy_pipeline", bound, &basis, || {
        let mut pipeline = Pipeline::new(&faults, FaultRng::from_seed(input.seed), true);
        let mut now = Duration::ZERO;
        let mut sent = Vec::new();
        let mut out = Vec::new();
        let mut last_at = Duration::ZERO;
        let mut take_due =
            |pipeline: &mut Pipeline, now: Duration, out: &mut Vec<u8>, closes: &mut usize| {
                pipeline.advance(now);
                while let Some(piece) = pipeline.pop_due(now) {
                    assert!(piece.at <= now, "a piece left before it was due");
                    assert!(piece.at >= last_at, "pieces left out of time order");
                    last_at = piece.at;
                    match piece.kind {
                        PieceKind::Data(data) => {
                            assert!(*closes == 0, "data after the close");
                            assert!(!data.is_empty(), "an empty write");
                            out.extend_from_slice(&data);
                        }
                        PieceKind::Eof => *closes += 1,
                        other => panic!("a fault that drops nothing produced {other:?}"),
                    }
                }
            };
        let mut closes = 0;
        for op in input.ops.iter().take(MAX_FUZZ_OPS) {
            match op {
                FuzzOp::Push { wait_us, bytes } => {
                    now += us(*wait_us);
                    sent.extend_from_slice(bytes);
                    pipeline.push(now, bytes::Bytes::copy_from_slice(bytes));
                }
                FuzzOp::Advance { wait_us } => now += us(*wait_us),
            }
            take_due(&mut pipeline, now, &mut out, &mut closes);
        }
        pipeline.end(now);
        // Let virtual time run until everything has left.
        let mut rounds = 0usize;
        loop {
            take_due(&mut pipeline, now, &mut out, &mut closes);
            match pipeline.next_wake() {
                Some(wake) => now = now.max(wake),
                None => break,
            }
            rounds += 1;
            assert!(
                rounds <= (sent.len() + 1) * (faults.len() + 1) * 4 + 64,
                "the pipeline keeps waking without finishing"
            );
        }
        assert_eq!(out, sent, "the bytes out differ from the bytes in");
        assert_eq!(closes, 1, "the close must leave exactly once, last");
        assert_eq!(pipeline.held_bytes(), 0, "bytes left behind");
        assert!(pipeline.is_idle());
    });
}
