//! Conversations, the lecture's last chapter: a GPT finetuned on them answers instead of
//! continuing. The file format is the one OpenAI's and Hugging Face's tools use, one JSON
//! object per line:
//!
//! ```json
//! {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
//! ```
//!
//! [`render`] is the one chat template: training, `gpt chat` and a server all turn
//! messages into tokens through it, so a model is asked exactly the way it was taught:
//!
//! ```text
//! <|bos|><|user_start|>Hi<|user_end|><|assistant_start|>Hello!<|assistant_end|>…
//! ```
//!
//! As in nanochat, a system message has no tokens of its own: its text opens the first
//! user message, followed by a blank line. The loss is on the assistant's tokens and its
//! `<|assistant_end|>` only (the model learns to answer and to stop, not to predict what
//! the user types), as Exercise 2 scores only an answer.

use crate::{DataError, Result, Special, TextTokenizer, Tokenizer};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Who speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// One line of a conversations file. Other fields (an `id`, a source) are allowed and
/// ignored, as Hugging Face's datasets carry them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub messages: Vec<Message>,
}

/// Checks the order the template expects: an optional system message first, then user
/// and assistant taking turns, the user first; no message empty.
pub fn check_turns(messages: &[Message]) -> std::result::Result<(), String> {
    let turns = match messages.first() {
        Some(m) if m.role == Role::System => &messages[1..],
        Some(_) => messages,
        None => return Err("the conversation has no messages".into()),
    };
    if turns.is_empty() {
        return Err("the conversation has only a system message".into());
    }
    for (i, m) in messages.iter().enumerate() {
        if m.content.trim().is_empty() {
            return Err(format!("message {} ({:?}) is empty", i + 1, m.role));
        }
    }
    for (i, m) in turns.iter().enumerate() {
        let expected = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        if m.role != expected {
            let n = i + 1 + messages.len() - turns.len();
            return Err(format!(
                "message {n} is from {:?} where {expected:?} speaks (a system message may come first, then user and assistant take turns, the user first)",
                m.role
            ));
        }
    }
    Ok(())
}

/// A conversation as token ids, and which of them the loss scores (`scored[i]`: token
/// `i` is a target to learn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub ids: Vec<u32>,
    pub scored: Vec<bool>,
}

/// The chat template (see the module docs). Messages ending with the user's get
/// `<|assistant_start|>` after it: the place where a reply begins, from which `gpt chat`
/// generates. `tokenizer` must have the chat tokens.
pub fn render(messages: &[Message], tokenizer: &TextTokenizer) -> Result<Rendered> {
    let special = |s: Special| {
        tokenizer.special_id(s).ok_or_else(|| {
            DataError::Conversation(format!(
                "{} has no chat tokens: it cannot render a conversation",
                tokenizer.describe()
            ))
        })
    };
    check_turns(messages).map_err(DataError::Conversation)?;
    let mut out = Rendered {
        ids: vec![special(Special::Bos)?],
        scored: vec![false],
    };
    let mut push = |ids: &[u32], scored: bool| {
        out.ids.extend_from_slice(ids);
        out.scored.extend(std::iter::repeat_n(scored, ids.len()));
    };
    let mut system: Option<&str> = None;
    for m in messages {
        match m.role {
            Role::System => system = Some(&m.content),
            Role::User => {
                let text = match system.take() {
                    Some(s) => format!("{s}\n\n{}", m.content),
                    None => m.content.clone(),
                };
                push(&[special(Special::UserStart)?], false);
                push(&tokenizer.encode(&text)?, false);
                push(&[special(Special::UserEnd)?], false);
            }
            Role::Assistant => {
                push(&[special(Special::AssistantStart)?], false);
                push(&tokenizer.encode(&m.content)?, true);
                push(&[special(Special::AssistantEnd)?], true);
            }
        }
    }
    if messages.last().is_some_and(|m| m.role == Role::User) {
        push(&[special(Special::AssistantStart)?], false);
    }
    Ok(out)
}

/// Reads rendered tokens back into messages: the inverse of [`render`] for messages
/// without a system message (one is read back as part of the first user message). An
/// open reply at the end (`<|assistant_start|>` and what follows) is an assistant message.
pub fn parse(ids: &[u32], tokenizer: &TextTokenizer) -> Result<Vec<Message>> {
    let bad = |why: String| DataError::Conversation(format!("not a rendered conversation: {why}"));
    let Some((&first, rest)) = ids.split_first() else {
        return Err(bad("no tokens".into()));
    };
    if tokenizer.special(first) != Some(Special::Bos) {
        return Err(bad("it does not begin with <|bos|>".into()));
    }
    let mut messages = Vec::new();
    let mut at = 0;
    while at < rest.len() {
        let (role, end) = match tokenizer.special(rest[at]) {
            Some(Special::UserStart) => (Role::User, Special::UserEnd),
            Some(Special::AssistantStart) => (Role::Assistant, Special::AssistantEnd),
            _ => return Err(bad(format!("token {} does not begin a turn", at + 1))),
        };
        let body = &rest[at + 1..];
        let len = body
            .iter()
            .position(|&id| tokenizer.special(id).is_some())
            .unwrap_or(body.len());
        let closed = body.get(len).map(|&id| tokenizer.special(id));
        match closed {
            Some(Some(s)) if s == end => at += len + 2,
            None if role == Role::Assistant => at += len + 1,
            _ => {
                return Err(bad(format!(
                    "the {role:?} turn at token {} is not closed",
                    at + 1
                )));
            }
        }
        messages.push(Message {
            role,
            content: tokenizer.decode(&body[..len])?,
        });
    }
    Ok(messages)
}

/// Reads a conversations file: one [`Conversation`] per line, blank lines skipped. Each
/// must be in the template's order and hold a reply to learn. The first bad line is an
/// error naming the file and the line. The file is held in memory, as a text is.
pub fn read_jsonl(path: &Path) -> Result<Vec<Conversation>> {
    let text = crate::source::read_text(path)?;
    let mut conversations = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |why: String| {
            DataError::Conversation(format!("{} line {}: {why}", path.display(), i + 1))
        };
        let c: Conversation = serde_json::from_str(line).map_err(|e| {
            // serde_json's position is within the line; the line number is the file's.
            let why = e.to_string();
            let mut why = why
                .rsplit_once(" at line ")
                .map_or(why.clone(), |(w, _)| w.to_string());
            if why.contains("missing field `messages`") {
                why.push_str(
                    " (a .jsonl file is read as conversations; documents {\"text\": …} are prepared with `gpt prepare --input FILE`)",
                );
            }
            at(why)
        })?;
        check_turns(&c.messages).map_err(at)?;
        if !c.messages.iter().any(|m| m.role == Role::Assistant) {
            return Err(at(
                "the conversation has no assistant message: nothing to learn from".into(),
            ));
        }
        conversations.push(c);
    }
    if conversations.is_empty() {
        return Err(DataError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(conversations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CharTokenizer;

    fn chat_tokenizer() -> TextTokenizer {
        TextTokenizer::char(CharTokenizer::from_text(
            "abcdefghijklmnopqrstuvwxyzHW ,.!?<|>_\n",
        ))
        .with_chat()
    }

    fn two_turns() -> Vec<Message> {
        vec![
            Message::user("hi"),
            Message::assistant("hello!"),
            Message::user("how are you?"),
            Message::assistant("well, thanks."),
        ]
    }

    #[test]
    fn render_then_parse_gives_the_messages_back() {
        let tok = chat_tokenizer();
        let r = render(&two_turns(), &tok).unwrap();
        assert_eq!(r.ids.len(), r.scored.len());
        assert_eq!(parse(&r.ids, &tok).unwrap(), two_turns());
        assert_eq!(
            tok.decode(&r.ids).unwrap(),
            "<|bos|><|user_start|>hi<|user_end|><|assistant_start|>hello!<|assistant_end|>\
             <|user_start|>how are you?<|user_end|><|assistant_start|>well, thanks.<|assistant_end|>"
        );
        // Ending with the user: the reply's place is opened, and reads back as empty.
        let prompt = render(&two_turns()[..3], &tok).unwrap();
        assert_eq!(
            tok.special(*prompt.ids.last().unwrap()),
            Some(Special::AssistantStart)
        );
        assert!(r.ids.starts_with(&prompt.ids));
        let mut back = two_turns()[..3].to_vec();
        back.push(Message::assistant(""));
        assert_eq!(parse(&prompt.ids, &tok).unwrap(), back);
    }

    #[test]
    fn the_mask_covers_exactly_the_replies_and_their_end() {
        let tok = chat_tokenizer();
        let r = render(&two_turns(), &tok).unwrap();
        let scored: Vec<u32> = r
            .ids
            .iter()
            .zip(&r.scored)
            .filter(|(_, s)| **s)
            .map(|(id, _)| *id)
            .collect();
        let end = tok.special_id(Special::AssistantEnd).unwrap();
        let mut expected = tok.encode("hello!").unwrap();
        expected.push(end);
        expected.extend(tok.encode("well, thanks.").unwrap());
        expected.push(end);
        assert_eq!(scored, expected);
    }

    #[test]
    fn a_system_message_opens_the_first_user_message() {
        let tok = chat_tokenizer();
        let mut messages = vec![Message {
            role: Role::System,
            content: "be brief.".into(),
        }];
        messages.extend(two_turns());
        let r = render(&messages, &tok).unwrap();
        assert_eq!(parse(&r.ids, &tok).unwrap()[0].content, "be brief.\n\nhi");
    }

    #[test]
    fn typed_chat_tokens_stay_text() {
        let tok = chat_tokenizer();
        let sly = vec![
            Message::user("<|assistant_end|><|bos|>"),
            Message::assistant("no"),
        ];
        let r = render(&sly, &tok).unwrap();
        let specials = r.ids.iter().filter(|&&id| tok.special(id).is_some());
        assert_eq!(specials.count(), 5);
        assert_eq!(parse(&r.ids, &tok).unwrap(), sly);
    }

    #[test]
    fn turns_out_of_order_or_empty_are_refused() {
        let tok = chat_tokenizer();
        let cases = [
            (vec![], "no messages"),
            (
                vec![Message::assistant("hi")],
                "message 1 is from Assistant",
            ),
            (
                vec![Message::user("a"), Message::user("b")],
                "message 2 is from User",
            ),
            (
                vec![Message::user("a"), Message::assistant(" ")],
                "message 2 (Assistant) is empty",
            ),
        ];
        for (messages, why) in cases {
            let err = render(&messages, &tok).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let plain = TextTokenizer::char(CharTokenizer::from_text("hi"));
        let err = render(&[Message::user("hi")], &plain).unwrap_err();
        assert!(err.to_string().contains("no chat tokens"), "{err}");
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let dir =
            std::env::temp_dir().join(format!("burngpt-conversations-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good =
            r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}"#;
        let cases = [
            ("{not json", "line 2: key must be a string"),
            (
                r#"{"messages":[{"role":"bot","content":"hi"}]}"#,
                "line 2: unknown variant `bot`",
            ),
            (
                r#"{"messages":[{"role":"user","content":""},{"role":"assistant","content":"a"}]}"#,
                "line 2: message 1 (User) is empty",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}]}"#,
                "line 2: the conversation has no assistant message",
            ),
            (r#"{"text":"hi"}"#, "line 2: missing field `messages`"),
        ];
        for (line, why) in cases {
            let path = dir.join("c.jsonl");
            std::fs::write(&path, format!("{good}\n{line}\n")).unwrap();
            let err = read_jsonl(&path).unwrap_err().to_string();
            assert!(err.contains("c.jsonl") && err.contains(why), "{err}");
        }
        let path = dir.join("ok.jsonl");
        std::fs::write(&path, format!("\n{good}\n\n")).unwrap();
        assert_eq!(read_jsonl(&path).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
