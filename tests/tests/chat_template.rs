//! Chat templates rendered by strata (minijinja) against transformers' renderer (jinja2
//! with trim_blocks and lstrip_blocks; fixture from scripts/make_chat_fixtures.py).

use strata::chat::{ChatTemplate, Message};
use strata_conformance::{fixtures, models};

fn messages(case: &serde_json::Value) -> Vec<Message> {
    case["messages"].as_array().unwrap().iter().map(|x| Message::new(x["role"].as_str().unwrap(), x["content"].as_str().unwrap())).collect()
}

#[test]
fn smollm2_template_renders_like_transformers() {
    let Some(path) = models::find(models::SMOLLM2) else { return };
    let fx = fixtures::json("reference/chat_template.json");
    let m = &fx["models"]["smollm2"];
    let files = strata::model::open(&path).unwrap();
    let src = files.gguf.as_ref().unwrap().get("tokenizer.chat_template").unwrap().as_str().unwrap();
    let t = ChatTemplate::new(src, m["bos"].as_str().unwrap(), m["eos"].as_str().unwrap()).unwrap();
    for case in m["cases"].as_array().unwrap() {
        let msgs = messages(case);
        let got = t.render(&msgs, case["add_generation_prompt"].as_bool().unwrap()).unwrap();
        assert_eq!(got, case["text"].as_str().unwrap());
    }
}

#[test]
fn whitespace_control_and_python_methods_like_jinja2() {
    let fx = fixtures::json("reference/chat_template.json");
    let syn = &fx["synthetic"];
    let t = ChatTemplate::new(syn["template"].as_str().unwrap(), "", "").unwrap();
    for case in syn["cases"].as_array().unwrap() {
        let msgs = messages(case);
        assert_eq!(t.render(&msgs, true).unwrap(), case["text"].as_str().unwrap());
    }
}

#[test]
fn gemma3_gguf_has_no_template() {
    let Some(path) = models::find(models::GEMMA3) else { return };
    let files = strata::model::open(&path).unwrap();
    assert!(files.gguf.as_ref().unwrap().get("tokenizer.chat_template").is_none());
    let fx = fixtures::json("reference/chat_template.json");
    assert!(fx["models"]["gemma3"]["template"].is_null());
}

#[test]
fn template_errors_are_errors() {
    let t = ChatTemplate::new("{{ raise_exception('no system role') }}", "", "").unwrap();
    let e = t.render(&[Message::new("system", "x")], true).unwrap_err();
    assert!(e.to_string().contains("no system role"), "{e}");
    assert!(ChatTemplate::new("{% if %}", "", "").is_err());
}
