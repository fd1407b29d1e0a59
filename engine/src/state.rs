//! The A2A task state machine: the one table of legal moves.

use std::fmt;
use std::str::FromStr;

/// A task's lifecycle state (A2A v1.0 `TaskState`, without `UNSPECIFIED`,
/// which is never valid on a stored task).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Submitted,
    Working,
    InputRequired,
    AuthRequired,
    Completed,
    Failed,
    Canceled,
    Rejected,
}

impl TaskState {
    /// Every state, in declaration order.
    pub const ALL: [TaskState; 8] = [
        TaskState::Submitted,
        TaskState::Working,
        TaskState::InputRequired,
        TaskState::AuthRequired,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Canceled,
        TaskState::Rejected,
    ];

    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected)
    }

    /// Interrupted states wait for the client (or an out-of-band credential).
    pub fn is_interrupted(self) -> bool {
        matches!(self, TaskState::InputRequired | TaskState::AuthRequired)
    }

    /// The states a task may be created in. A new task normally starts
    /// `Submitted`; an agent may also reject it outright.
    pub fn is_initial(self) -> bool {
        matches!(self, TaskState::Submitted | TaskState::Rejected)
    }

    /// The single source of legal moves (PROTOCOL.md §2.3).
    ///
    /// A status event that repeats the current non-terminal state is legal: it
    /// carries progress (a new status message) without moving the task.
    /// Nothing moves back to `Submitted`, and nothing leaves a terminal state.
    pub fn can_transition_to(self, to: TaskState) -> bool {
        use TaskState::*;
        match (self, to) {
            (from, _) if from.is_terminal() => false,
            (Submitted, Submitted) => true,
            (_, Submitted) => false,
            (_, Working | InputRequired | AuthRequired) => true,
            (_, Completed | Failed | Rejected | Canceled) => true,
        }
    }

    /// The name used in the database (`tasks.state`).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::InputRequired => "input_required",
            TaskState::AuthRequired => "auth_required",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
            TaskState::Rejected => "rejected",
        }
    }

    /// Converts from the wire type; `UNSPECIFIED` has no stored counterpart.
    pub fn from_a2a(state: &a2a::TaskState) -> Option<TaskState> {
        use a2a::TaskState as W;
        Some(match state {
            W::Unspecified => return None,
            W::Submitted => TaskState::Submitted,
            W::Working => TaskState::Working,
            W::InputRequired => TaskState::InputRequired,
            W::AuthRequired => TaskState::AuthRequired,
            W::Completed => TaskState::Completed,
            W::Failed => TaskState::Failed,
            W::Canceled => TaskState::Canceled,
            W::Rejected => TaskState::Rejected,
        })
    }

    /// Converts to the wire type.
    pub fn to_a2a(self) -> a2a::TaskState {
        use a2a::TaskState as W;
        match self {
            TaskState::Submitted => W::Submitted,
            TaskState::Working => W::Working,
            TaskState::InputRequired => W::InputRequired,
            TaskState::AuthRequired => W::AuthRequired,
            TaskState::Completed => W::Completed,
            TaskState::Failed => W::Failed,
            TaskState::Canceled => W::Canceled,
            TaskState::Rejected => W::Rejected,
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of ours.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown task state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::{self, *};
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn any_state() -> impl Strategy<Value = TaskState> {
        proptest::sample::select(TaskState::ALL.to_vec())
    }

    fn reachable_from(start: TaskState) -> HashSet<TaskState> {
        let mut seen = HashSet::from([start]);
        let mut frontier = vec![start];
        while let Some(from) = frontier.pop() {
            for to in TaskState::ALL {
                if from.can_transition_to(to) && seen.insert(to) {
                    frontier.push(to);
                }
            }
        }
        seen
    }

    #[test]
    fn every_state_is_reachable_from_submitted() {
        assert_eq!(reachable_from(Submitted).len(), TaskState::ALL.len());
    }

    #[test]
    fn every_non_terminal_state_can_end_every_way() {
        for from in TaskState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            for to in [Completed, Failed, Canceled, Rejected] {
                assert!(from.can_transition_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn nothing_returns_to_submitted() {
        for from in TaskState::ALL.into_iter().filter(|s| *s != Submitted) {
            assert!(!from.can_transition_to(Submitted), "{from} -> submitted");
        }
    }

    #[test]
    fn names_round_trip_through_the_database_and_the_wire() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>().ok(), Some(state));
            assert_eq!(TaskState::from_a2a(&state.to_a2a()), Some(state));
            assert_eq!(state.is_terminal(), state.to_a2a().is_terminal());
        }
        assert_eq!(TaskState::from_a2a(&a2a::TaskState::Unspecified), None);
        assert!("TASK_STATE_WORKING".parse::<TaskState>().is_err());
    }

    proptest! {
        /// Walk random paths through the table: once a walk reaches a terminal
        /// state, no later step is legal, so a task ends exactly once.
        #[test]
        fn random_walks_end_at_most_once(steps in proptest::collection::vec(any_state(), 0..40)) {
            let mut state = Submitted;
            let mut terminal_entries = 0;
            for to in steps {
                if state.can_transition_to(to) {
                    prop_assert!(!state.is_terminal());
                    state = to;
                    if state.is_terminal() {
                        terminal_entries += 1;
                    }
                }
            }
            prop_assert!(terminal_entries <= 1);
        }

        #[test]
        fn terminal_states_never_move(from in any_state(), to in any_state()) {
            if from.is_terminal() {
                prop_assert!(!from.can_transition_to(to));
            }
        }

        #[test]
        fn interrupted_states_resume_to_working(from in any_state()) {
            if from.is_interrupted() {
                prop_assert!(from.can_transition_to(Working));
            }
        }
    }
}
