//! Which case the dispatcher looks at when, free of IO: the open cases it
//! has folded, the cases to look at again (dirty), the wake-ups of the
//! deadline watch, the steps of its own still being committed or not yet
//! read back, and the closed cases reopened whose history is being read.
//!
//! The worker (`service`) feeds it what the stream and the log answer and
//! carries out what it asks for: [`Schedule::observe`] may ask to read a
//! case's history ([`Observation::Load`]), [`Schedule::act`] hands out the
//! steps to commit ([`StepCommit`]), [`Schedule::settle`] takes their answers.
//! Nothing here waits, reads a clock or touches NATS: `now` is an argument.
//!
//! The rule that keeps steps from being taken twice: a case with a step of
//! ours in flight is not decided again until that step's answer says where
//! the case stands, and its event (or the one that beat it) has been read
//! back from the stream ([`InFlight`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use gridcase_domain::{CaseId, Event};
use gridcase_envelope::{CaseSubject, DecodeError, Head, StoredEvent};
use jiff::Timestamp;

use crate::core::{Action, Core, Observed, Tracked};

/// What the core needs of a stored event (it knows nothing of the format).
pub fn observed(stored: &StoredEvent, sequence: u64) -> Observed {
    Observed { at: stored.occurred_at, role: stored.actor.role, sequence, hash: stored.hash.clone() }
}

/// Where a step of ours on a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlight {
    /// Being committed: its answer says what comes next.
    Committing,
    /// Committed: done once the event at this stream sequence is read.
    Until(u64),
    /// Lost to another writer: done once the next event of the case is read.
    NextEvent,
}

/// A reopened case whose history is being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loading {
    pub subject: CaseSubject,
    /// The last sequence of the case the stream reader saw meanwhile.
    pub seen: u64,
}

/// One case's steps to commit together, after `head` (one atomic chain).
#[derive(Debug, Clone)]
pub struct StepCommit {
    pub head: Head,
    pub steps: Vec<(Event, Action)>,
}

/// What the log answered a [`StepCommit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Every step is in the log (by this commit or another instance's);
    /// the last one at this stream sequence.
    Stored { last_sequence: u64 },
    /// Another writer moved the case first.
    Conflict,
    /// No definite answer, or writes stopped: the case is looked at again.
    Retry,
    /// Refused for good: the case waits for its next event or wake-up.
    Refused,
}

/// What reading one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The case is tracked (open, or its erasure pending).
    Tracked(CaseId),
    /// The case needs no step of the dispatcher's any more: let it go.
    Dropped(CaseId),
    /// A closed case reopened: read its whole history (then [`Schedule::loaded`]).
    Load(CaseSubject),
    /// Nothing to do: not an event of an open case, or folded already.
    Ignored,
    /// A message this version cannot read: skipped; its case (if it names
    /// one) is left alone from now on.
    Unreadable(Option<CaseId>),
}

/// What a read history did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// Folded: the case is tracked again if it needs the dispatcher.
    Done,
    /// Read it again (the log did not answer, or the stream reader saw a
    /// later event of the case meanwhile).
    Again(CaseSubject),
    /// It cannot be read: the case is left alone.
    Unreadable,
    /// Not a case being read (answered twice).
    Unknown,
}

/// Why a case's history could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadFailure {
    /// The log did not answer: read it again.
    Unavailable,
    /// It cannot be read (an event this version cannot decode, a broken chain).
    Unreadable,
}

/// The dispatcher's state between the stream and the log.
#[derive(Debug, Default)]
pub struct Schedule {
    /// Open cases (and closed ones whose erasure is still to come).
    pub(crate) cases: HashMap<CaseId, Tracked>,
    /// Cases to look at once caught up.
    dirty: BTreeSet<CaseId>,
    /// (instant, case): when to look at a case again.
    wakeups: BTreeSet<(Timestamp, CaseId)>,
    /// Cases with a step of ours being committed, or committed but its
    /// event not read back yet: nothing else is decided for them meanwhile.
    in_flight: HashMap<CaseId, InFlight>,
    /// Cases with an event this version cannot read: left alone.
    pub(crate) unreadable: HashSet<CaseId>,
    /// Closed cases reopened, whose history is being read.
    loading: HashMap<CaseId, Loading>,
    /// The stream sequence of the last message read.
    position: u64,
    /// The end of the stream as the last message saw it (its sequence plus
    /// what was pending then).
    seen_end: u64,
    /// The clock time of the last look at the wake-ups.
    woken_at: Option<Timestamp>,
    /// Take a step that follows another at once in the same commit.
    chain_steps: bool,
}

impl Schedule {
    pub fn new(chain_steps: bool) -> Self {
        Self { chain_steps, ..Self::default() }
    }

    /// Take over a snapshot of open cases covering the stream up to
    /// `position`: every case is looked at once caught up, and the reopened
    /// cases being read then are read again.
    pub fn resume(
        &mut self,
        position: u64,
        cases: HashMap<CaseId, Tracked>,
        unreadable: HashSet<CaseId>,
        loading: impl IntoIterator<Item = CaseSubject>,
    ) -> Vec<CaseSubject> {
        self.dirty.extend(cases.keys().copied());
        self.cases = cases;
        self.unreadable = unreadable;
        // Every event of the case up to the covered position is in its
        // history; the reader notes any later one.
        self.loading = loading.into_iter().map(|s| (s.case_id(), Loading { subject: s, seen: 0 })).collect();
        self.position = position;
        self.seen_end = position;
        self.loading.values().map(|l| l.subject.clone()).collect()
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    pub fn seen_end(&self) -> u64 {
        self.seen_end
    }

    pub fn open_cases(&self) -> usize {
        self.cases.len()
    }

    pub fn tracked(&self, case_id: &CaseId) -> Option<&Tracked> {
        self.cases.get(case_id)
    }

    /// The subjects of the reopened cases being read (for a snapshot).
    pub fn loading_subjects(&self) -> Vec<CaseSubject> {
        self.loading.values().map(|loading| loading.subject.clone()).collect()
    }

    /// The stream was read to `sequence`, with `pending` messages after it.
    pub fn saw_end(&mut self, sequence: u64, pending: u64) {
        self.seen_end = self.seen_end.max(sequence + pending);
    }

    /// Whether everything read so far has been decided: nothing dirty, no
    /// step in flight, no history being read. Then, read to the end of the
    /// stream, [`Schedule::woken_at`] and the position say what the
    /// dispatcher has caught up with.
    pub fn settled(&self) -> bool {
        self.dirty.is_empty() && self.in_flight.is_empty() && self.loading.is_empty()
    }

    /// Cases waiting to be looked at.
    pub fn dirty_cases(&self) -> usize {
        self.dirty.len()
    }

    /// The clock time of the last look at the wake-ups.
    pub fn woken_at(&self) -> Option<Timestamp> {
        self.woken_at
    }

    /// Fold the message at `sequence` on `subject` (`stored`, or why it
    /// could not be read).
    pub fn observe(
        &mut self,
        core: &Core<'_>,
        subject: &str,
        stored: Result<&StoredEvent, &DecodeError>,
        sequence: u64,
    ) -> Observation {
        self.position = sequence;
        // Whatever the event is (even one this version cannot read), the
        // case on this subject moved: a step of ours in flight on it has its
        // answer once its last event is read.
        if let Some((_, subject_case)) = CaseSubject::parse(subject) {
            self.answered(subject_case, sequence);
        }
        let Ok(stored) = stored else { return Observation::Unreadable(None) };
        let case_id = stored.case_id;
        let Ok(event) = stored.decode() else {
            self.unreadable.insert(case_id);
            return Observation::Unreadable(Some(case_id));
        };
        if let Some(loading) = self.loading.get_mut(&case_id) {
            // Its history is being read: the load folds this event too, or reads again.
            loading.seen = loading.seen.max(sequence);
            return Observation::Ignored;
        }
        let tracked = self.cases.remove(&case_id);
        if let Some(known) = &tracked
            && sequence <= known.last_sequence
        {
            // Folded already, by a load that read further than the stream reader.
            self.cases.insert(case_id, tracked.expect("known"));
            return Observation::Ignored;
        }
        if tracked.is_none() && matches!(event, Event::Reopened { .. }) {
            // A closed case is not kept (no step of ours can be due on it);
            // reopened, its whole history is read from the log and folded.
            let Some(subject) = CaseSubject::from_subject(subject) else { return Observation::Ignored };
            self.loading.insert(case_id, Loading { subject: subject.clone(), seen: sequence });
            return Observation::Load(subject);
        }
        let observation = match core.observe(tracked, &observed(stored, sequence), &event) {
            Some(tracked) if core.keeps(&tracked) => {
                self.cases.insert(case_id, tracked);
                self.dirty.insert(case_id);
                Observation::Tracked(case_id)
            }
            Some(_) => {
                self.dirty.remove(&case_id);
                Observation::Dropped(case_id)
            }
            // An event for a case not open here (never filed, or closed).
            None => Observation::Ignored,
        };
        self.answered(case_id, sequence);
        observation
    }

    /// A reopened case's history as read (each event with its stream
    /// sequence), or why it could not be: fold it all, as a full replay
    /// would have, and track the case again, unless the stream reader saw an
    /// event of it beyond what was read.
    pub fn loaded(
        &mut self,
        core: &Core<'_>,
        case_id: CaseId,
        history: Result<Vec<(u64, &StoredEvent)>, LoadFailure>,
    ) -> Loaded {
        let Some(loading) = self.loading.get(&case_id) else { return Loaded::Unknown };
        let history = match history {
            Ok(history) => history,
            Err(LoadFailure::Unavailable) => return Loaded::Again(loading.subject.clone()),
            Err(LoadFailure::Unreadable) => return self.leave_alone(case_id),
        };
        let last = history.last().map_or(0, |(sequence, _)| *sequence);
        if loading.seen > last {
            return Loaded::Again(loading.subject.clone());
        }
        let mut tracked = None;
        for (sequence, stored) in history {
            let Ok(event) = stored.decode() else { return self.leave_alone(case_id) };
            tracked = core.observe(tracked, &observed(stored, sequence), &event);
        }
        self.loading.remove(&case_id);
        if let Some(tracked) = tracked.filter(|t| core.keeps(t)) {
            self.cases.insert(case_id, tracked);
            self.dirty.insert(case_id);
        }
        Loaded::Done
    }

    /// A reopened case whose history cannot be read: left alone.
    fn leave_alone(&mut self, case_id: CaseId) -> Loaded {
        self.unreadable.insert(case_id);
        self.loading.remove(&case_id);
        Loaded::Unreadable
    }

    /// The event at `sequence` of `case_id` was read: a step of ours in
    /// flight on the case is done if it ends there (or its end is unknown).
    fn answered(&mut self, case_id: CaseId, sequence: u64) {
        let done = match self.in_flight.get(&case_id) {
            Some(InFlight::Until(last)) => sequence >= *last,
            Some(InFlight::NextEvent) => true,
            // The commit's answer decides (its event may be this one).
            Some(InFlight::Committing) | None => false,
        };
        if done {
            self.in_flight.remove(&case_id);
        }
    }

    /// Every case whose wake-up is due at `now` becomes dirty.
    pub fn wake_due(&mut self, now: Timestamp) {
        self.woken_at = Some(now);
        while let Some(first) = self.wakeups.first().copied() {
            if first.0 > now {
                break;
            }
            self.wakeups.pop_first();
            self.dirty.insert(first.1);
        }
    }

    /// Decide the next step of dirty cases at `now` (and, where the state
    /// after it calls for another step at once, that one too, in the same
    /// commit): at most `room` commits; the cases left over stay dirty. Each
    /// case handed out is in flight until its answer and its event are read.
    pub fn act(&mut self, core: &Core<'_>, now: Timestamp, room: usize) -> Vec<StepCommit> {
        let mut commits = Vec::new();
        // Only as many as there is room for are taken (a backlog of
        // thousands is not re-sorted on every turn).
        while commits.len() < room {
            let Some(case_id) = self.dirty.pop_first() else { break };
            if self.in_flight.contains_key(&case_id) || self.unreadable.contains(&case_id) {
                continue;
            }
            let Some(tracked) = self.cases.get(&case_id) else { continue };
            match core.next_action(tracked, now) {
                Some(action) => match gridcase_domain::decide(Some(&tracked.case), &action.command, now) {
                    Ok(event) => {
                        let mut steps = vec![(event, action)];
                        if let Some(next) = self.chain_steps.then(|| core.follow_on(tracked, &steps[0], now)).flatten()
                        {
                            steps.push(next);
                        }
                        commits.push(StepCommit { head: tracked.head(), steps });
                        self.in_flight.insert(case_id, InFlight::Committing);
                    }
                    Err(error) => {
                        tracing::error!(%case_id, %error, "the dispatcher decided a step the rules refuse")
                    }
                },
                None => {
                    if let Some(at) = core.next_wakeup(tracked, now) {
                        self.wakeups.insert((at, case_id));
                    }
                }
            }
        }
        commits
    }

    /// The log's answer to a commit handed out by [`Schedule::act`]: say
    /// when the case may be looked at again.
    pub fn settle(&mut self, head: &Head, answer: Answer) {
        let case_id = head.case_id;
        match answer {
            Answer::Stored { last_sequence } if last_sequence > self.position => {
                self.in_flight.insert(case_id, InFlight::Until(last_sequence));
            }
            Answer::Stored { .. } => {
                // Read already, while it was being committed: look at the case now.
                self.in_flight.remove(&case_id);
                self.dirty.insert(case_id);
            }
            Answer::Conflict => {
                // Look again once the event that won is read (or now, if it was).
                let read_on = self.cases.get(&case_id).is_none_or(|t| t.last_sequence > head.last_sequence);
                if read_on {
                    self.in_flight.remove(&case_id);
                    if self.cases.contains_key(&case_id) {
                        self.dirty.insert(case_id);
                    }
                } else {
                    self.in_flight.insert(case_id, InFlight::NextEvent);
                }
            }
            Answer::Retry => {
                self.in_flight.remove(&case_id);
                self.dirty.insert(case_id);
            }
            Answer::Refused => {
                self.in_flight.remove(&case_id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
