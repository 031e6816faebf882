//! Access control: classification labels on documents, clearances of users, and the rule that
//! joins them, both as a predicate ([`can_read`]) and as a `deftech-vec` filter ([`filter`])
//! so that searches never return what a user may not read (enforced inside the search, not by
//! dropping results afterwards).
//!
//! A user may read a document when
//! - the document's level is at most the user's clearance,
//! - every compartment of the document is one of the user's (all are required), and
//! - the document has no releasability groups, or shares at least one with the user.
//!
//! Labels are stored in each chunk's payload under `acl`:
//! `{"acl": {"level": 2, "compartments": ["NOFORN"], "groups": ["USA", "GBR"]}}`.

use std::collections::BTreeSet;

use deftech_vec::{AnyValues, Condition, Filter, Range};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The releasability group of an answer whose cited documents share no group: no user holds
/// it, so the answer is releasable to no one.
pub const RELEASABLE_TO_NONE: &str = "(none)";

/// Classification levels, ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// Unclassified.
    Unclassified = 0,
    /// Controlled unclassified information.
    Cui = 1,
    /// Confidential.
    Confidential = 2,
    /// Secret.
    Secret = 3,
    /// Top secret.
    TopSecret = 4,
}

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 5] = [
        Level::Unclassified,
        Level::Cui,
        Level::Confidential,
        Level::Secret,
        Level::TopSecret,
    ];

    /// The stored number.
    pub fn rank(self) -> i64 {
        self as i64
    }
}

/// A document's (and its chunks') classification label.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Classification level.
    pub level: Level,
    /// Compartments: a reader needs every one.
    pub compartments: BTreeSet<String>,
    /// Releasability groups: a reader needs one of them (none: releasable to all cleared).
    pub groups: BTreeSet<String>,
}

impl Label {
    /// An unrestricted label at `level`.
    pub fn new(level: Level) -> Label {
        Label {
            level,
            compartments: BTreeSet::new(),
            groups: BTreeSet::new(),
        }
    }

    /// The payload object stored under `acl`.
    pub fn to_payload(&self) -> Value {
        json!({"level": self.level.rank(), "compartments": self.compartments, "groups": self.groups})
    }

    /// Reads a label written by [`Label::to_payload`]; `None` when it is missing or malformed
    /// (such a chunk is treated as unreadable).
    pub fn from_payload(v: &Value) -> Option<Label> {
        let rank = v.get("level")?.as_i64()?;
        let level = *Level::ALL.iter().find(|l| l.rank() == rank)?;
        let set = |k: &str| -> Option<BTreeSet<String>> {
            match v.get(k) {
                None | Some(Value::Null) => Some(BTreeSet::new()),
                Some(a) => a
                    .as_array()?
                    .iter()
                    .map(|x| x.as_str().map(str::to_owned))
                    .collect(),
            }
        };
        Some(Label {
            level,
            compartments: set("compartments")?,
            groups: set("groups")?,
        })
    }

    /// The least upper bound of labels (an answer citing them carries it): the highest level,
    /// every compartment, and the groups every cited document is releasable to (a document
    /// without groups does not restrict). `None` for no labels.
    pub fn lub<'a>(labels: impl IntoIterator<Item = &'a Label>) -> Option<Label> {
        let mut out: Option<Label> = None;
        for l in labels {
            out = Some(match out {
                None => l.clone(),
                Some(mut acc) => {
                    acc.level = acc.level.max(l.level);
                    acc.compartments.extend(l.compartments.iter().cloned());
                    acc.groups = match (acc.groups.is_empty(), l.groups.is_empty()) {
                        (true, _) => l.groups.clone(),
                        (false, true) => acc.groups,
                        (false, false) => {
                            let common: BTreeSet<String> =
                                acc.groups.intersection(&l.groups).cloned().collect();
                            // Disjoint groups: releasable to no one (an empty set would mean
                            // "to every cleared reader").
                            if common.is_empty() {
                                [RELEASABLE_TO_NONE.to_owned()].into()
                            } else {
                                common
                            }
                        }
                    };
                    acc
                }
            });
        }
        out
    }
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable identifier (for the audit trail).
    pub id: String,
    /// Roles (for the audit trail and the API).
    pub roles: Vec<String>,
    /// Highest level the user may read.
    pub clearance: Level,
    /// Compartments the user is read into.
    pub compartments: BTreeSet<String>,
    /// Releasability groups the user belongs to.
    pub groups: BTreeSet<String>,
}

/// The rule, as a predicate.
pub fn can_read(user: &User, label: &Label) -> bool {
    label.level <= user.clearance
        && label.compartments.is_subset(&user.compartments)
        && (label.groups.is_empty() || !label.groups.is_disjoint(&user.groups))
}

/// The rule, as a search filter on payloads written with [`Label::to_payload`] under `acl`.
pub fn filter(user: &User) -> Filter {
    let keywords = |s: &BTreeSet<String>| AnyValues::Keywords(s.iter().cloned().collect());
    let mut groups = vec![Condition::is_empty("acl.groups")];
    if !user.groups.is_empty() {
        groups.push(Condition::matches_any("acl.groups", keywords(&user.groups)));
    }
    Filter::must([
        Condition::range(
            "acl.level",
            Range::default().lte(user.clearance.rank() as f64),
        ),
        Filter::should(groups).into(),
    ])
    // A compartment the user lacks excludes the document ("has a value none of the user's").
    .with_must_not([Condition::matches_except(
        "acl.compartments",
        keywords(&user.compartments),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use deftech_vec::{
        CollectionConfig, Database, MemoryDirectory, Metric, OptimizerConfig, Point, PointId,
        ScrollRequest,
    };
    use proptest::prelude::*;

    const COMPARTMENTS: [&str; 3] = ["HCS", "SI", "TK"];
    const GROUPS: [&str; 3] = ["USA", "GBR", "AUS"];

    fn subset(names: &'static [&'static str]) -> impl Strategy<Value = BTreeSet<String>> {
        proptest::sample::subsequence(names, 0..=names.len())
            .prop_map(|v| v.into_iter().map(str::to_owned).collect())
    }

    fn level() -> impl Strategy<Value = Level> {
        proptest::sample::select(Level::ALL.to_vec())
    }

    fn label() -> impl Strategy<Value = Label> {
        (level(), subset(&COMPARTMENTS), subset(&GROUPS)).prop_map(
            |(level, compartments, groups)| Label {
                level,
                compartments,
                groups,
            },
        )
    }

    fn user() -> impl Strategy<Value = User> {
        (level(), subset(&COMPARTMENTS), subset(&GROUPS)).prop_map(
            |(clearance, compartments, groups)| User {
                id: "u".into(),
                roles: vec![],
                clearance,
                compartments,
                groups,
            },
        )
    }

    #[test]
    fn the_rule_by_example() {
        let mut u = User {
            id: "ana".into(),
            roles: vec!["analyst".into()],
            clearance: Level::Secret,
            compartments: ["SI".to_owned()].into(),
            groups: ["USA".to_owned()].into(),
        };
        let mut l = Label::new(Level::Secret);
        assert!(can_read(&u, &l));
        l.level = Level::TopSecret;
        assert!(!can_read(&u, &l));
        l.level = Level::Confidential;
        l.compartments.insert("SI".into());
        assert!(can_read(&u, &l));
        l.compartments.insert("TK".into());
        assert!(!can_read(&u, &l));
        l.compartments.remove("TK");
        l.groups = ["GBR".to_owned()].into();
        assert!(!can_read(&u, &l));
        u.groups.insert("GBR".into());
        assert!(can_read(&u, &l));
    }

    #[test]
    fn lub_of_labels() {
        let a = Label {
            level: Level::Cui,
            compartments: ["SI".into()].into(),
            groups: ["USA".into(), "GBR".into()].into(),
        };
        let b = Label {
            level: Level::Secret,
            compartments: ["TK".into()].into(),
            groups: ["GBR".into(), "AUS".into()].into(),
        };
        let c = Label::new(Level::Unclassified);
        let l = Label::lub([&a, &b, &c]).unwrap();
        assert_eq!(l.level, Level::Secret);
        assert_eq!(l.compartments, ["SI".to_owned(), "TK".to_owned()].into());
        assert_eq!(l.groups, ["GBR".to_owned()].into());
        assert_eq!(Label::lub([]), None);
        let usa = Label {
            groups: ["USA".into()].into(),
            ..Label::new(Level::Cui)
        };
        let gbr = Label {
            groups: ["GBR".into()].into(),
            ..Label::new(Level::Cui)
        };
        assert_eq!(
            Label::lub([&usa, &gbr]).unwrap().groups,
            [RELEASABLE_TO_NONE.to_owned()].into()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The filter inside the engine returns exactly the chunks the rule allows: nothing above
        /// the user's clearance ever comes back, and nothing readable is lost.
        #[test]
        fn the_filter_is_the_rule(labels in proptest::collection::vec(label(), 1..60), users in proptest::collection::vec(user(), 1..8)) {
            let db = Database::open_in(std::sync::Arc::new(MemoryDirectory::new())).unwrap();
            let c = db
                .create_collection("chunks", CollectionConfig::new(2, Metric::Dot).optimizer(OptimizerConfig::default().background(false)))
                .unwrap();
            c.upsert(labels.iter().enumerate().map(|(i, l)| {
                Point::new(i as u64, vec![1.0, i as f32]).with_payload(json!({"acl": l.to_payload()}))
            }))
            .unwrap();
            for u in &users {
                let got: Vec<PointId> = c
                    .scroll(&ScrollRequest::new(1000).filter(filter(u)))
                    .unwrap()
                    .points
                    .into_iter()
                    .map(|p| p.id)
                    .collect();
                let want: Vec<PointId> = labels
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| can_read(u, l))
                    .map(|(i, _)| PointId::from(i as u64))
                    .collect();
                prop_assert_eq!(got, want, "user {:?}", u);
            }
        }
    }
}
