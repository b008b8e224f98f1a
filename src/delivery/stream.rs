//! Sending instances one at a time while their study is still downloading,
//! for `watch`: [`Streamer`].
//!
//! One association at a time, proposing the SOP classes and transfer
//! syntaxes seen so far and reopened when a new one appears; the caller
//! lends it to the closing passes and gives it back
//! ([`Streamer::take_association`], [`Streamer::adopt`]), so that one
//! association carries study after study. Only the fast
//! path is taken here: a success or warning is recorded in the study's
//! journal, and everything else (a refused syntax, a failure status, no
//! answer) is left to the closing [`super::Store`] pass, with its
//! conversions, retries and reasons. So a study is delivered by the same
//! code as `retriever store`, and streaming only makes most of it arrive
//! earlier.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Stalls, record_stored};
use crate::cache::{Cache, Journal};
use crate::dimse::{InstanceMeta, MAX_CONTEXTS, ScuError, ScuOptions, StoreAssociation, StoreOutcome, proposals_for};
use crate::uid::Uid;

/// What became of an instance handed to [`Streamer::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Streamed {
    /// The destination stored it, and the journal says so.
    Stored,
    /// Not sent, or not stored: the closing pass sends it and says why.
    Left,
    /// No association could be opened (why): nothing was sent; try again later.
    Unreachable(String),
    /// Sent, but no answer came: not delivered. `gave_up` is set when this
    /// study's stalls say to stop streaming it (see [`Stalls`]), with why.
    NoAnswer { gave_up: Option<String> },
    /// Stored, but the journal could not record it (why): the closing pass
    /// sends it again, at worst a duplicate.
    NotRecorded(String),
}

/// One attempt of [`Streamer::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// An association was opened for it (so the destination is reachable).
    pub opened: bool,
    pub outcome: Streamed,
    /// What happened on the way, worth a line of its own (an association
    /// that could not be released, a request that went unanswered).
    pub info: Vec<String>,
}

/// The open association and the (SOP class, transfer syntax) pairs it proposed.
struct Open {
    assoc: StoreAssociation,
    pairs: Vec<(String, String)>,
}

/// What the streamer keeps per study.
#[derive(Default)]
struct Study {
    /// Opened (and locked) at the first instance stored.
    journal: Option<Journal>,
    /// The destination's unanswered requests for this study.
    stalls: Stalls,
}

/// Sends instances as they land over one association, recording each one
/// stored in its study's journal.
pub struct Streamer {
    cache: Cache,
    scu: ScuOptions,
    dest_key: String,
    assoc: Option<Open>,
    /// Pairs the destination does not take as they are: the closing pass deals with them.
    refused: HashSet<(String, String)>,
    studies: HashMap<Uid, Study>,
    last_send: Instant,
}

impl Streamer {
    pub fn new(cache: Cache, scu: ScuOptions) -> Streamer {
        Streamer {
            dest_key: scu.destination.key(),
            cache,
            scu,
            assoc: None,
            refused: HashSet::new(),
            studies: HashMap::new(),
            last_send: Instant::now(),
        }
    }

    /// An association is open.
    pub fn is_open(&self) -> bool {
        self.assoc.is_some()
    }

    /// How long since the last instance was sent.
    pub fn idle(&self) -> Duration {
        self.last_send.elapsed()
    }

    /// Sends one instance of `study` that is in the cache at `path`.
    pub fn send(&mut self, study: &Uid, sop: &Uid, path: &Path) -> Attempt {
        let mut info = Vec::new();
        let left = |opened| Attempt {
            opened,
            outcome: Streamed::Left,
            info: Vec::new(),
        };
        // An instance that cannot be read is the closing pass's to report.
        let Ok(meta) = InstanceMeta::read(path) else {
            return left(false);
        };
        let pair = (meta.sop_class.clone(), meta.transfer_syntax.clone());
        if self.refused.contains(&pair) {
            return left(false);
        }
        let subject = format!("streaming of study {study} to {}", self.scu.destination);
        let ready = crate::timings::time(&subject, "association open", || self.ensure_open(&pair, &mut info));
        let opened = match ready {
            Ready::Yes { opened } => opened,
            Ready::Skip => return Attempt { info, ..left(false) },
            Ready::Down(why) => {
                return Attempt {
                    opened: false,
                    outcome: Streamed::Unreachable(why),
                    info,
                };
            }
        };
        let open = self.assoc.as_mut().expect("opened above");
        let outcome = crate::timings::time(&subject, "C-STORE", || open.assoc.store_instance(path, &meta));
        crate::timings::at(&subject, "first C-STORE answer");
        self.last_send = Instant::now();
        let state = self.studies.entry(study.clone()).or_default();
        if let Ok(StoreOutcome::Responded { .. }) = &outcome {
            state.stalls.progress();
        }
        let outcome = match outcome {
            Ok(StoreOutcome::Responded { status, .. }) if status.is_delivered() => {
                let journal = match &mut state.journal {
                    Some(j) => j,
                    slot @ None => match self.cache.open_journal(study, &self.dest_key) {
                        Ok(j) => slot.insert(j),
                        Err(e) => {
                            return Attempt {
                                opened,
                                outcome: Streamed::NotRecorded(format!("{e:#}")),
                                info,
                            };
                        }
                    },
                };
                match record_stored(journal, sop, &status, None, self.scu.coerce.fingerprint()) {
                    Ok(()) => Streamed::Stored,
                    Err(e) => Streamed::NotRecorded(format!("{e:#}")),
                }
            }
            Ok(StoreOutcome::SopClassNotAccepted { .. } | StoreOutcome::NeedsOtherSyntax { .. }) => {
                self.refused.insert(pair);
                Streamed::Left
            }
            // A failure status: the closing pass sends it again and records why.
            Ok(_) => Streamed::Left,
            Err(e) => {
                if !open.assoc.is_usable() {
                    self.assoc = None;
                }
                if !matches!(e, ScuError::File { .. }) {
                    info.push(format!("instance {sop}: {e}"));
                }
                let gave_up = state.stalls.failed(&e, &self.scu.destination.to_string());
                Streamed::NoAnswer { gave_up }
            }
        };
        Attempt { opened, outcome, info }
    }

    /// Makes sure the open association proposed `pair`, opening a new one
    /// (with every pair seen so far) if needed. One proposed for another
    /// pair's sake will do: an uncompressed syntax comes with the other.
    fn ensure_open(&mut self, pair: &(String, String), info: &mut Vec<String>) -> Ready {
        if let Some(open) = &self.assoc
            && open.assoc.proposes(&pair.0, &pair.1)
            && open.assoc.is_usable()
        {
            return Ready::Yes { opened: false };
        }
        let mut pairs = self.assoc.as_ref().map(|o| o.pairs.clone()).unwrap_or_default();
        if !pairs.contains(pair) {
            pairs.push(pair.clone());
        }
        let proposals = proposals_for(pairs.iter().map(|(c, t)| (c.as_str(), t.as_str())));
        if proposals.len() > MAX_CONTEXTS {
            self.refused.insert(pair.clone());
            return Ready::Skip;
        }
        if let Err(e) = self.release() {
            info.push(e.to_string());
        }
        match StoreAssociation::open(&self.scu, &proposals) {
            Ok(assoc) => {
                self.assoc = Some(Open { assoc, pairs });
                Ready::Yes { opened: true }
            }
            Err(ScuError::NoAcceptedContext { .. }) => {
                self.refused.extend(pairs);
                Ready::Skip
            }
            Err(e) => Ready::Down(e.to_string()),
        }
    }

    /// The open association, for a closing pass to send on (the streamer
    /// has none until [`Streamer::adopt`] gives one back).
    pub fn take_association(&mut self) -> Option<StoreAssociation> {
        self.assoc.take().map(|o| o.assoc).filter(StoreAssociation::is_usable)
    }

    /// Streams on `assoc` from now on (what a closing pass left open),
    /// releasing the one open, if any.
    pub fn adopt(&mut self, assoc: Option<StoreAssociation>) -> Result<(), ScuError> {
        let Some(assoc) = assoc.filter(StoreAssociation::is_usable) else {
            return Ok(());
        };
        let released = self.release();
        let pairs = assoc
            .proposals()
            .iter()
            .flat_map(|p| p.transfer_syntaxes.iter().map(|ts| (p.sop_class.clone(), ts.clone())))
            .collect();
        self.assoc = Some(Open { assoc, pairs });
        // Idle from now: the pass's last send was on it.
        self.last_send = Instant::now();
        released
    }

    /// Releases the association, if one is open and still usable.
    pub fn release(&mut self) -> Result<(), ScuError> {
        match self.assoc.take() {
            Some(open) if open.assoc.is_usable() => open.assoc.release(),
            _ => Ok(()),
        }
    }

    /// Done with `study` here: its journal is synced and unlocked.
    pub fn finish_study(&mut self, study: &Uid) {
        crate::timings::print(&format_args!("streaming of study {study} to {}", self.scu.destination));
        if let Some(mut state) = self.studies.remove(study)
            && let Some(journal) = state.journal.as_mut()
        {
            // Not synced, so a power cut sends them again: at worst duplicates.
            let _ = journal.sync();
        }
    }

    /// Done with every study (see [`Streamer::finish_study`]).
    pub fn finish_all(&mut self) {
        let studies: Vec<Uid> = self.studies.keys().cloned().collect();
        for study in studies {
            self.finish_study(&study);
        }
    }
}

enum Ready {
    /// The association proposes the pair; `opened` when it was opened for it.
    Yes { opened: bool },
    /// Not streamed: the closing pass takes care of it.
    Skip,
    /// The destination cannot be reached now (why).
    Down(String),
}
