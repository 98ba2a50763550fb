//! `pipe validate` on files with every class of configuration error.

use super::support::{pipe_command, Scratch};

fn validate(files: &[&std::path::Path], envs: &[(&str, &str)]) -> (i32, String) {
    let output =
        pipe_command().arg("validate").args(files).envs(envs.iter().copied()).output().expect("run pipe validate");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

const VALID: &str = r#"
[sources.in]
type = "demo"
count = 10

[transforms.expand]
type = "json_expand"
inputs = ["in"]
fields = ["event"]

[sinks.out]
type = "blackhole"
inputs = ["expand"]
"#;

#[test]
fn a_valid_pipeline_passes() {
    let scratch = Scratch::new();
    let (code, output) = validate(&[&scratch.write("ok.toml", VALID)], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("valid: 1 source(s), 1 transform(s), 1 sink(s)"), "{output}");
}

#[test]
fn every_error_is_reported_with_file_component_and_fix() {
    let scratch = Scratch::new();
    let file = scratch.write(
        "bad.toml",
        r#"
[sources.in]
type = "demoo"

[sources.gen]
type = "demo"
batch_size = 0

[transforms.loop_a]
type = "truncate"
inputs = ["loop_b"]
fields = { message = 10 }

[transforms.loop_b]
type = "truncate"
inputs = ["loop_a"]
fields = { message = 10 }

[transforms.orphan]
type = "json_expand"
fields = ["event"]

[sinks.out]
type = "console"
inputs = ["gen_typo"]
encodingg = "json"

[sinks.file_out]
type = "file"
inputs = ["gne"]
path = "x"
idle_timeout = "30"
"#,
    );
    let (code, output) = validate(&[&file], &[]);
    assert_eq!(code, 1, "{output}");
    let expect = |fragment: &str| assert!(output.contains(fragment), "missing {fragment:?} in:\n{output}");
    expect("bad.toml: source \"in\": unknown type \"demoo\"; known types are: demo");
    expect("source \"gen\": \"batch_size\" is 0; set it above 0");
    expect("the transforms form a cycle: loop_");
    expect("transform \"orphan\": has no inputs");
    expect("sink \"out\": unknown field `encodingg`");
    expect("sink \"file_out\": input \"gne\" does not name a source or transform; did you mean \"gen\"?");
    expect("invalid duration \"30\"");
    assert!(output.lines().filter(|line| line.starts_with("error: ")).count() >= 6, "{output}");
}

#[test]
fn duplicate_ids_across_files_are_errors() {
    let scratch = Scratch::new();
    let base = scratch.write("base.toml", VALID);
    let other = scratch.write("other.toml", "[sinks.in]\ntype = \"blackhole\"\ninputs = [\"expand\"]\n");
    let (code, output) = validate(&[&base, &other], &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("the id \"in\" is also used by a source"), "{output}");
    assert!(output.contains("other.toml"), "{output}");
}

#[test]
fn unset_variables_name_the_file_and_line() {
    let scratch = Scratch::new();
    let file = scratch.write("env.toml", "\n[sources.in]\ntype = \"demo\"\nseed = ${DEMO_SEED_FOR_TEST}\n");
    let (code, output) = validate(&[&file], &[]);
    assert_eq!(code, 1);
    assert!(output.contains("env.toml: line 4: environment variable DEMO_SEED_FOR_TEST is not set"), "{output}");
}

#[test]
fn overlays_override_the_base_and_take_typed_values_from_the_environment() {
    let scratch = Scratch::new();
    let base = scratch.write("base.toml", VALID);
    let overlay = scratch.write(
        "prod.toml",
        "[sources.in]\ncount = ${COUNT}\n[sinks.out]\ntype = \"file\"\npath = \"${OUT_DIR}/x.ndjson\"\n",
    );
    let (code, output) = validate(&[&base, &overlay], &[("COUNT", "5"), ("OUT_DIR", "/tmp/a \"quoted\" dir")]);
    assert_eq!(code, 0, "{output}");
    let (code, output) = validate(&[&base, &overlay], &[("COUNT", "five"), ("OUT_DIR", "/tmp")]);
    assert_eq!(code, 1, "a string where a number belongs must fail: {output}");
    assert!(output.contains("source \"in\""), "{output}");
}

#[test]
fn unknown_top_level_keys_and_graph_output() {
    let scratch = Scratch::new();
    let (code, output) = validate(&[&scratch.write("top.toml", &format!("datadir = \"x\"\n{VALID}"))], &[]);
    assert_eq!(code, 1);
    assert!(output.contains("unknown field `datadir`"), "{output}");

    let graph = pipe_command().arg("graph").arg(scratch.write("ok.toml", VALID)).output().unwrap();
    let dot = String::from_utf8(graph.stdout).unwrap();
    assert!(dot.starts_with("digraph pipe {"), "{dot}");
    assert!(dot.contains("\"in\" -> \"expand\";") && dot.contains("\"expand\" -> \"out\";"), "{dot}");
}

#[test]
fn an_unconsumed_rules_writeback_output_is_not_a_warning_but_a_misnamed_one_is_an_error() {
    let scratch = Scratch::new();
    let rules = r#"
[sources.in]
type = "demo"
count = 10

[transforms.alert_rules]
type = "rules"
inputs = ["in"]

[[transforms.alert_rules.rule]]
name = "any"
type = "any"

[sinks.out]
type = "blackhole"
inputs = ["alert_rules"]
"#;
    let (code, output) = validate(&[&scratch.write("rules.toml", rules)], &[]);
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains("not consumed"), "the writeback output is optional: {output}");

    let misnamed = rules.replace("inputs = [\"alert_rules\"]", "inputs = [\"alert_rules\", \"alert_rules.status\"]");
    let (code, output) = validate(&[&scratch.write("misnamed.toml", &misnamed)], &[]);
    assert_ne!(code, 0, "{output}");
    assert!(output.contains("\"alert_rules.writeback\""), "the error lists the real outputs: {output}");
}
