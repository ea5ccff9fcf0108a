//! A tiny preprocessor for the `.wgsl` kernel files: just enough to build variants
//! (weight dtype, f16 vs f32 compute, subgroups, the per-target `enable` directives,
//! workgroup sizes) from one source file.
//!
//! - `#include "file.wgsl"` splices another kernel file (once per include line);
//! - `#if NAME` / `#if !NAME` / `#elif NAME` / `#else` / `#endif` keep or drop lines
//!   (`NAME` is true when defined with a value other than `0`);
//! - `{{NAME}}` is replaced by `NAME`'s value; an undefined name is an error, so a
//!   missing define never compiles into a silently different kernel.

use std::collections::BTreeMap;

/// Values for `#if` and `{{...}}`.
pub type Defines = BTreeMap<&'static str, String>;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct PreprocessError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

fn truthy(defines: &Defines, name: &str) -> bool {
    defines.get(name).is_some_and(|v| v != "0")
}

fn condition(defines: &Defines, expr: &str) -> Option<bool> {
    let expr = expr.trim();
    let (neg, name) = match expr.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, expr),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some(truthy(defines, name) != neg)
}

/// Expands `file` (looked up through `files`) with `defines`.
pub fn preprocess(file: &str, files: &dyn Fn(&str) -> Option<&'static str>, defines: &Defines) -> Result<String, PreprocessError> {
    let mut out = String::new();
    expand(file, files, defines, &mut out, 0)?;
    Ok(out)
}

struct Frame {
    /// Whether the enclosing lines are kept.
    parent: bool,
    /// Whether some branch of this `#if` chain has been taken.
    taken: bool,
    /// Whether the current branch is kept.
    active: bool,
    seen_else: bool,
}

fn expand(file: &str, files: &dyn Fn(&str) -> Option<&'static str>, defines: &Defines, out: &mut String, depth: usize) -> Result<(), PreprocessError> {
    let err = |line: usize, message: String| PreprocessError { file: file.to_string(), line, message };
    if depth > 8 {
        return Err(err(0, "includes nest deeper than 8 (a cycle?)".into()));
    }
    let src = files(file).ok_or_else(|| err(0, "no such kernel file".into()))?;
    let mut stack: Vec<Frame> = Vec::new();
    let keeping = |stack: &Vec<Frame>| stack.last().is_none_or(|f| f.active);
    for (i, line) in src.lines().enumerate() {
        let n = i + 1;
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("#if ") {
            let c = condition(defines, rest).ok_or_else(|| err(n, format!("bad condition `{rest}`")))?;
            let parent = keeping(&stack);
            stack.push(Frame { parent, taken: c, active: parent && c, seen_else: false });
        } else if let Some(rest) = t.strip_prefix("#elif ") {
            let c = condition(defines, rest).ok_or_else(|| err(n, format!("bad condition `{rest}`")))?;
            let f = stack.last_mut().ok_or_else(|| err(n, "#elif without #if".into()))?;
            if f.seen_else {
                return Err(err(n, "#elif after #else".into()));
            }
            f.active = f.parent && !f.taken && c;
            f.taken |= c;
        } else if t.starts_with("#else") {
            let f = stack.last_mut().ok_or_else(|| err(n, "#else without #if".into()))?;
            if f.seen_else {
                return Err(err(n, "second #else".into()));
            }
            f.seen_else = true;
            f.active = f.parent && !f.taken;
            f.taken = true;
        } else if t.starts_with("#endif") {
            stack.pop().ok_or_else(|| err(n, "#endif without #if".into()))?;
        } else if let Some(rest) = t.strip_prefix("#include ") {
            if keeping(&stack) {
                let name = rest.trim().trim_matches('"');
                expand(name, files, defines, out, depth + 1).map_err(|e| if e.line == 0 { err(n, format!("#include \"{name}\": {}", e.message)) } else { e })?;
            }
        } else if t.starts_with('#') {
            return Err(err(n, format!("unknown directive `{}`", t.split_whitespace().next().unwrap_or(t))));
        } else if keeping(&stack) {
            out.push_str(&substitute(line, defines).map_err(|m| err(n, m))?);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err(err(src.lines().count(), format!("{} #if without #endif", stack.len())));
    }
    Ok(())
}

fn substitute(line: &str, defines: &Defines) -> Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| "unclosed {{".to_string())?;
        let name = after[..end].trim();
        let value = defines.get(name).ok_or_else(|| format!("{{{{{name}}}}} is not defined"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &'static str, defs: &[(&'static str, &str)]) -> Result<String, PreprocessError> {
        let files = move |name: &str| match name {
            "main" => Some(src),
            "inc" => Some("included {{X}}"),
            "loop" => Some("#include \"loop\""),
            _ => None,
        };
        let d: Defines = defs.iter().map(|&(k, v)| (k, v.to_string())).collect();
        preprocess("main", &files, &d)
    }

    #[test]
    fn branches_nest_and_chain() {
        let src = "a\n#if A\nb\n#if B\nc\n#else\nd\n#endif\n#elif C\ne\n#else\nf\n#endif\ng";
        assert_eq!(run(src, &[("A", "1"), ("B", "1")]).unwrap(), "a\nb\nc\ng\n");
        assert_eq!(run(src, &[("A", "1"), ("B", "0")]).unwrap(), "a\nb\nd\ng\n");
        assert_eq!(run(src, &[("C", "1")]).unwrap(), "a\ne\ng\n");
        assert_eq!(run(src, &[]).unwrap(), "a\nf\ng\n");
        assert_eq!(run("#if !A\nx\n#endif", &[]).unwrap(), "x\n");
    }

    #[test]
    fn substitutes_and_includes() {
        assert_eq!(run("@workgroup_size({{WG}})\n#include \"inc\"", &[("WG", "64"), ("X", "y")]).unwrap(), "@workgroup_size(64)\nincluded y\n");
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(run("ok\n{{MISSING}}", &[]).unwrap_err().line, 2);
        assert!(run("#if A\nx", &[]).unwrap_err().message.contains("without #endif"));
        assert!(run("#endif", &[]).is_err());
        assert!(run("#else\n", &[]).is_err());
        assert!(run("#if A\n#else\n#else\n#endif", &[]).is_err());
        assert!(run("#pragma x", &[]).unwrap_err().message.contains("unknown directive"));
        assert!(run("#include \"nope\"", &[]).unwrap_err().message.contains("no such kernel file"));
        assert!(run("#include \"loop\"", &[]).is_err());
    }
}
