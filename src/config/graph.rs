//! Wiring validation and component building: `PipelineConfig` in,
//! `BuiltPipeline` out.
//!
//! Checks, all reported together: inputs that name no source or transform
//! (with the closest id as a suggestion), inputs that name a sink, named
//! outputs that do not exist, transforms and sinks without inputs, inputs
//! listed twice, cycles (printed as a chain), and each component's own checks
//! (its `build`). Outputs nobody consumes are warnings, except the optional
//! ones a transform declares (`TransformConfig::optional_outputs`).

use std::collections::{BTreeMap, BTreeSet};

use super::{split_input, ComponentKind, ConfigError, ConfigErrors, GlobalOptions, PipelineConfig};
use crate::topology::buffer::BufferOptions;
use crate::topology::component::{BuildContext, Sink, Source, Transform};

/// A reference to one output of a component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputRef {
    pub component: String,
    /// `None` for the default output.
    pub output: Option<String>,
}

impl std::fmt::Display for OutputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.output {
            Some(output) => write!(f, "{}.{output}", self.component),
            None => f.write_str(&self.component),
        }
    }
}

pub struct BuiltSource {
    pub id: String,
    pub component_type: &'static str,
    pub source: Box<dyn Source>,
}

pub struct BuiltTransform {
    pub id: String,
    pub component_type: &'static str,
    pub inputs: Vec<OutputRef>,
    /// Declared outputs; `None` is the default output.
    pub outputs: Vec<Option<String>>,
    pub transform: Transform,
}

pub struct BuiltSink {
    pub id: String,
    pub component_type: &'static str,
    pub inputs: Vec<OutputRef>,
    pub buffer: BufferOptions,
    pub sink: Box<dyn Sink>,
}

/// A validated pipeline whose components are built and ready to run.
pub struct BuiltPipeline {
    pub global: GlobalOptions,
    pub sources: Vec<BuiltSource>,
    pub transforms: Vec<BuiltTransform>,
    pub sinks: Vec<BuiltSink>,
    pub warnings: Vec<String>,
}

/// Validates the wiring and builds every component.
pub fn build(config: &PipelineConfig) -> Result<BuiltPipeline, ConfigErrors> {
    build_reporting(config, Vec::new())
}

/// Loads `source`, validates the wiring and builds every component,
/// reporting every problem found at any stage together.
pub fn load_and_build(source: &super::ConfigSource) -> Result<(PipelineConfig, BuiltPipeline), ConfigErrors> {
    let (config, errors) = source.load_partial()?;
    let built = build_reporting(&config, errors)?;
    Ok((config, built))
}

fn build_reporting(config: &PipelineConfig, earlier_errors: Vec<ConfigError>) -> Result<BuiltPipeline, ConfigErrors> {
    let mut errors = earlier_errors;
    let wiring = check_wiring(config, &mut errors);

    let build_context = |id: &str| BuildContext { id: id.to_string(), data_dir: config.global.data_dir.clone() };
    let mut sources = Vec::new();
    for (id, outer) in &config.sources {
        match outer.config.build(&build_context(id)) {
            Ok(source) => {
                sources.push(BuiltSource { id: id.clone(), component_type: outer.config.type_name(), source })
            }
            Err(error) => errors.push(component_error(config, ComponentKind::Source, id, error.0)),
        }
    }
    let mut transforms = Vec::new();
    for (id, outer) in &config.transforms {
        match outer.config.build(&build_context(id)) {
            Ok(transform) => transforms.push(BuiltTransform {
                id: id.clone(),
                component_type: outer.config.type_name(),
                inputs: wiring.inputs.get(id).cloned().unwrap_or_default(),
                outputs: outer.config.outputs(),
                transform,
            }),
            Err(error) => errors.push(component_error(config, ComponentKind::Transform, id, error.0)),
        }
    }
    let mut sinks = Vec::new();
    for (id, outer) in &config.sinks {
        match outer.config.build(&build_context(id)) {
            Ok(sink) => sinks.push(BuiltSink {
                id: id.clone(),
                component_type: outer.config.type_name(),
                inputs: wiring.inputs.get(id).cloned().unwrap_or_default(),
                buffer: outer.buffer,
                sink,
            }),
            Err(error) => errors.push(component_error(config, ComponentKind::Sink, id, error.0)),
        }
    }

    if errors.is_empty() {
        Ok(BuiltPipeline { global: config.global.clone(), sources, transforms, sinks, warnings: wiring.warnings })
    } else {
        Err(ConfigErrors(errors))
    }
}

fn component_error(config: &PipelineConfig, kind: ComponentKind, id: &str, message: String) -> ConfigError {
    ConfigError { files: config.origin_of(id), component: format!("{kind} \"{id}\""), message }
}

struct Wiring {
    inputs: BTreeMap<String, Vec<OutputRef>>,
    warnings: Vec<String>,
}

fn check_wiring(config: &PipelineConfig, errors: &mut Vec<ConfigError>) -> Wiring {
    // Every output a component may be wired from.
    let mut outputs: BTreeMap<&str, Vec<Option<String>>> = BTreeMap::new();
    for id in config.sources.keys() {
        outputs.insert(id, vec![None]);
    }
    for (id, outer) in &config.transforms {
        outputs.insert(id, outer.config.outputs());
    }
    // A component whose settings failed still exists: wiring to it is not an
    // error, and its own inputs are still checked. Its named outputs are
    // unknown, so any output name is accepted.
    let broken_transforms: BTreeSet<&str> = config
        .broken
        .iter()
        .filter(|(_, (kind, _))| *kind == ComponentKind::Transform)
        .map(|(id, _)| id.as_str())
        .collect();
    for (id, (kind, _)) in &config.broken {
        if *kind != ComponentKind::Sink {
            outputs.insert(id, vec![None]);
        }
    }

    let mut inputs = BTreeMap::new();
    let mut consumed: BTreeSet<OutputRef> = BTreeSet::new();
    let consumers = config
        .transforms
        .iter()
        .map(|(id, outer)| (ComponentKind::Transform, id, &outer.inputs))
        .chain(config.sinks.iter().map(|(id, outer)| (ComponentKind::Sink, id, &outer.inputs)))
        .chain(
            config
                .broken
                .iter()
                .filter(|(_, (kind, _))| *kind != ComponentKind::Source)
                .map(|(id, (kind, inputs))| (*kind, id, inputs)),
        );
    for (kind, id, raw_inputs) in consumers {
        let mut error = |message: String| errors.push(component_error(config, kind, id, message));
        if raw_inputs.is_empty() {
            let hint =
                outputs.keys().next().map(|first| format!(", for example inputs = [\"{first}\"]")).unwrap_or_default();
            error(format!("has no inputs; add \"inputs\" naming the sources or transforms it reads from{hint}"));
            continue;
        }
        let mut resolved = Vec::new();
        for raw in raw_inputs {
            let (component, output) = split_input(raw);
            let reference = OutputRef { component: component.to_string(), output: output.map(str::to_string) };
            if resolved.contains(&reference) {
                error(format!("\"inputs\" lists \"{raw}\" twice; remove one"));
                continue;
            }
            match outputs.get(component) {
                Some(_) if broken_transforms.contains(component) => {
                    consumed.insert(reference.clone());
                    resolved.push(reference);
                }
                None if config.sinks.contains_key(component)
                    || config.broken.get(component).is_some_and(|(kind, _)| *kind == ComponentKind::Sink) =>
                {
                    error(format!(
                        "input \"{raw}\" is a sink, and sinks have no outputs; read from a source or transform instead"
                    ));
                }
                None => {
                    let suggestion = closest(component, outputs.keys().copied())
                        .map(|close| format!("; did you mean \"{close}\"?"))
                        .unwrap_or_else(|| {
                            format!(
                                "; known sources and transforms: {}",
                                outputs.keys().copied().collect::<Vec<_>>().join(", ")
                            )
                        });
                    error(format!("input \"{raw}\" does not name a source or transform{suggestion}"));
                }
                Some(declared) if !declared.contains(&reference.output) => {
                    let names: Vec<String> = declared
                        .iter()
                        .map(|name| match name {
                            Some(name) => format!("\"{component}.{name}\""),
                            None => format!("\"{component}\""),
                        })
                        .collect();
                    error(format!(
                        "input \"{raw}\" is not an output of \"{component}\"; its outputs are {}",
                        names.join(", ")
                    ));
                }
                Some(_) => {
                    consumed.insert(reference.clone());
                    resolved.push(reference);
                }
            }
        }
        inputs.insert(id.clone(), resolved);
    }

    for cycle in find_cycles(config, &inputs) {
        let first = cycle[0].clone();
        errors.push(ConfigError {
            files: config.origin_of(&first),
            component: format!("transform \"{first}\""),
            message: format!(
                "the transforms form a cycle: {}; break it by removing one of these inputs",
                cycle.join(" -> ")
            ),
        });
    }

    let mut warnings = Vec::new();
    for (component, declared) in outputs.iter().filter(|(component, _)| !config.broken.contains_key(**component)) {
        let optional =
            config.transforms.get(*component).map(|outer| outer.config.optional_outputs()).unwrap_or_default();
        for output in declared {
            if output.as_deref().is_some_and(|name| optional.contains(&name)) {
                continue;
            }
            let reference = OutputRef { component: component.to_string(), output: output.clone() };
            if !consumed.contains(&reference) {
                warnings.push(format!(
                    "{}: output \"{reference}\" is not consumed by any transform or sink; its events are discarded",
                    config.origin_of(component)
                ));
            }
        }
    }
    Wiring { inputs, warnings }
}

/// Cycles among transforms, each as the chain of ids ending where it started.
fn find_cycles(config: &PipelineConfig, inputs: &BTreeMap<String, Vec<OutputRef>>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnStack,
        Done,
    }
    let ids: Vec<&String> = config.transforms.keys().collect();
    let mut marks: BTreeMap<&str, Mark> = ids.iter().map(|id| (id.as_str(), Mark::Unvisited)).collect();
    let mut cycles = Vec::new();

    fn visit<'a>(
        id: &'a str,
        inputs: &'a BTreeMap<String, Vec<OutputRef>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        marks.insert(id, Mark::OnStack);
        stack.push(id);
        for upstream in inputs.get(id).into_iter().flatten() {
            match marks.get(upstream.component.as_str()).copied() {
                Some(Mark::Unvisited) => visit(upstream.component.as_str(), inputs, marks, stack, cycles),
                Some(Mark::OnStack) => {
                    let start = stack.iter().position(|entry| *entry == upstream.component).expect("on the stack");
                    let mut chain: Vec<String> = stack[start..].iter().rev().map(|entry| entry.to_string()).collect();
                    chain.rotate_right(1);
                    chain.push(chain[0].clone());
                    cycles.push(chain);
                }
                _ => {}
            }
        }
        stack.pop();
        marks.insert(id, Mark::Done);
    }

    for id in ids {
        if marks[id.as_str()] == Mark::Unvisited {
            visit(id, inputs, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

/// The most similar known id, if any is similar enough to be a likely typo:
/// a small edit (swapped or mistyped letters) or a shared prefix.
fn closest<'a>(wanted: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .filter(|candidate| {
            strsim::damerau_levenshtein(wanted, candidate) <= 2 || strsim::jaro_winkler(wanted, candidate) >= 0.8
        })
        .min_by(|a, b| {
            let rank = |candidate: &str| {
                (strsim::damerau_levenshtein(wanted, candidate), -strsim::jaro_winkler(wanted, candidate))
            };
            let (a, b) = (rank(a), rank(b));
            a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))
        })
}

/// The graph in Graphviz DOT, for `pipe graph`.
pub fn to_dot(config: &PipelineConfig) -> String {
    let mut dot = String::from("digraph pipe {\n  rankdir=LR;\n");
    let quote = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
    for (id, outer) in &config.sources {
        dot.push_str(&format!(
            "  {} [shape=trapezium, label={}];\n",
            quote(id),
            quote(&format!("{id}\n({})", outer.config.type_name()))
        ));
    }
    for (id, outer) in &config.transforms {
        dot.push_str(&format!(
            "  {} [shape=box, label={}];\n",
            quote(id),
            quote(&format!("{id}\n({})", outer.config.type_name()))
        ));
    }
    for (id, outer) in &config.sinks {
        dot.push_str(&format!(
            "  {} [shape=invtrapezium, label={}];\n",
            quote(id),
            quote(&format!("{id}\n({})", outer.config.type_name()))
        ));
    }
    let edges = config
        .transforms
        .iter()
        .map(|(id, outer)| (id, &outer.inputs))
        .chain(config.sinks.iter().map(|(id, outer)| (id, &outer.inputs)));
    for (id, inputs) in edges {
        for input in inputs {
            let (component, output) = split_input(input);
            match output {
                Some(output) => {
                    dot.push_str(&format!("  {} -> {} [label={}];\n", quote(component), quote(id), quote(output)))
                }
                None => dot.push_str(&format!("  {} -> {};\n", quote(component), quote(id))),
            }
        }
    }
    dot.push_str("}\n");
    dot
}
