//! `route`: sends each event to the named outputs whose condition it matches.
//!
//! Keys: `routes` (an array of `{ name, condition }` or `{ name, query }`
//! tables, in order; wire them downstream as `ID.NAME`), `mode` = `"all"`
//! (default, as Vector's route: an event goes to every matching output, as a
//! copy) or `"first"` (only the first matching route, in order — the if/elif
//! chain alert plugins wrote by hand), `keyword_fields` (for every condition).
//! Events matching no route go to the `_unmatched` output.
//!
//! Acknowledgements: pass-through; a copy sent to several outputs settles
//! separately per output. An output nobody consumes discards its events on
//! purpose (validation warns); wire it to a `blackhole` sink to count them
//! without the warning.

use serde::Deserialize;

use super::condition::ConditionConfig;
use crate::event::EventBatch;
use crate::query::Query;
use crate::topology::{BuildContext, BuildError, FunctionTransform, Transform, TransformOutputBuffer};

/// The output for events that matched no route.
pub const UNMATCHED_OUTPUT: &str = "_unmatched";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteMode {
    #[default]
    All,
    First,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub name: String,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub query: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub routes: Vec<RouteEntry>,
    #[serde(default)]
    pub mode: RouteMode,
    #[serde(default)]
    pub keyword_fields: Vec<String>,
}

impl RouteConfig {
    /// The declared outputs: every route name, then `_unmatched`.
    pub fn outputs(&self) -> Vec<Option<String>> {
        self.routes.iter().map(|route| Some(route.name.clone())).chain([Some(UNMATCHED_OUTPUT.to_string())]).collect()
    }

    pub fn build(&self, _cx: &BuildContext) -> Result<Transform, BuildError> {
        if self.routes.is_empty() {
            return Err(BuildError::new(
                "\"routes\" is empty; add routes like routes = [{ name = \"errors\", condition = \"level:ERROR\" }]",
            ));
        }
        let mut routes = Vec::with_capacity(self.routes.len());
        for (index, route) in self.routes.iter().enumerate() {
            let what = format!("routes[{index}] (\"{}\")", route.name);
            if route.name.is_empty() || route.name.contains(['.', ' ']) || route.name == UNMATCHED_OUTPUT {
                return Err(BuildError::new(format!("{what}: a route name must be non-empty, contain no dots or spaces, and not be \"{UNMATCHED_OUTPUT}\"")));
            }
            if self.routes[..index].iter().any(|earlier| earlier.name == route.name) {
                return Err(BuildError::new(format!("{what}: the name is used twice; route names must be unique")));
            }
            let condition = ConditionConfig {
                condition: route.condition.clone(),
                query: route.query.clone(),
                keyword_fields: self.keyword_fields.clone(),
            };
            routes.push((route.name.clone(), condition.compile(&what)?));
        }
        Ok(Transform::Function(Box::new(Route { routes, mode: self.mode, matched: Vec::new() })))
    }
}

struct Route {
    routes: Vec<(String, Query)>,
    mode: RouteMode,
    /// Reused per event: indices of the matching routes.
    matched: Vec<usize>,
}

impl FunctionTransform for Route {
    fn transform(&mut self, batch: EventBatch, output: &mut TransformOutputBuffer) {
        for event in batch {
            self.matched.clear();
            for (index, (_, query)) in self.routes.iter().enumerate() {
                if query.matches(&event) {
                    self.matched.push(index);
                    if self.mode == RouteMode::First {
                        break;
                    }
                }
            }
            match self.matched.split_last() {
                None => output.push_named(UNMATCHED_OUTPUT, event),
                Some((&last, others)) => {
                    for &index in others {
                        output.push_named(&self.routes[index].0, event.clone());
                    }
                    output.push_named(&self.routes[last].0, event);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LogEvent;

    fn route(text: &str) -> (Box<dyn FunctionTransform>, RouteConfig) {
        let config: RouteConfig = toml::from_str(text).unwrap();
        let Transform::Function(route) =
            config.build(&BuildContext { id: "r".into(), data_dir: "data".into() }).unwrap()
        else {
            panic!()
        };
        (route, config)
    }

    fn host(name: &str) -> LogEvent {
        let mut event = LogEvent::from_fields("test", Default::default());
        event.insert("host", name);
        event
    }

    fn names(output: &TransformOutputBuffer) -> Vec<(String, usize)> {
        output.named.iter().map(|(name, batch)| (name.clone(), batch.len())).collect()
    }

    #[test]
    fn first_mode_is_an_if_elif_chain_and_unmatched_events_have_their_own_output() {
        let (mut route, config) = route(
            r#"
mode = "first"
keyword_fields = ["host"]
routes = [
  { name = "qa_wallet", condition = "host:*wallet* AND host:*qa*" },
  { name = "wallet", condition = "host:*wallet*" },
  { name = "api", condition = "host:(*api* OR *admin* OR *php*)" },
]
"#,
        );
        assert_eq!(config.outputs().last().unwrap().as_deref(), Some("_unmatched"));
        let mut output = TransformOutputBuffer::default();
        route.transform(
            vec![host("wallet-qa-01"), host("wallet-prod-02"), host("php-web-02"), host("search-prod-05")],
            &mut output,
        );
        assert_eq!(
            names(&output),
            [("qa_wallet".into(), 1), ("wallet".into(), 1), ("api".into(), 1), ("_unmatched".into(), 1)]
        );
    }

    #[test]
    fn all_mode_copies_to_every_match() {
        let (mut route, _) = route("routes = [{ name = \"a\", condition = \"host:*wallet*\" }, { name = \"b\", condition = \"host:*qa*\" }]\nkeyword_fields = [\"host\"]");
        let mut output = TransformOutputBuffer::default();
        route.transform(vec![host("wallet-qa-01")], &mut output);
        assert_eq!(names(&output), [("a".into(), 1), ("b".into(), 1)]);
    }

    #[test]
    fn bad_routes_are_build_errors() {
        let config: RouteConfig = toml::from_str("routes = [{ name = \"a.b\", condition = \"x:1\" }]").unwrap();
        assert!(config.build(&BuildContext { id: "r".into(), data_dir: "data".into() }).is_err());
        let config: RouteConfig = toml::from_str("routes = [{ name = \"a\" }]").unwrap();
        let error = config.build(&BuildContext { id: "r".into(), data_dir: "data".into() }).err().unwrap();
        assert!(error.0.contains("no condition"), "{error}");
    }
}
