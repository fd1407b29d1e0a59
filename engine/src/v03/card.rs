//! The v0.3 Agent Card: one `url` with a `preferredTransport` and
//! `additionalInterfaces`, read into the v1 card our workers choose from.

use a2a::{AgentCapabilities, AgentCard, AgentInterface, AgentSkill};
use serde::Deserialize;
use serde_json::Value;

/// The v0.3 card, as far as a caller needs it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03Card {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub url: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub protocol_version: Option<String>,
    #[serde(default)]
    pub preferred_transport: Option<String>,
    #[serde(default)]
    pub additional_interfaces: Vec<V03Interface>,
    #[serde(default)]
    pub capabilities: V03Capabilities,
    #[serde(default)]
    pub default_input_modes: Vec<String>,
    #[serde(default)]
    pub default_output_modes: Vec<String>,
    #[serde(default)]
    pub skills: Vec<V03Skill>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct V03Interface {
    pub url: String,
    pub transport: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03Capabilities {
    #[serde(default)]
    pub streaming: Option<bool>,
    #[serde(default)]
    pub push_notifications: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V03Skill {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub examples: Option<Vec<String>>,
}

/// The interface version a v0.3 card's entries get in our model.
pub const VERSION: &str = "0.3";

/// Whether a card as served is a v0.3 card: it names its `url` and has no
/// v1 interface list (a card serving both generations has both, and is
/// read as v1).
pub fn is_v03_card(raw: &Value) -> bool {
    raw.get("supportedInterfaces").is_none() && raw.get("url").is_some_and(Value::is_string)
}

impl V03Card {
    /// The card in the v1 model: each transport it names becomes an
    /// interface of version 0.3 (the preferred one first).
    pub fn into_v1(self) -> AgentCard {
        let preferred = self.preferred_transport.clone().unwrap_or_else(|| "JSONRPC".into());
        let mut interfaces: Vec<AgentInterface> = Vec::new();
        let named = std::iter::once((self.url.clone(), preferred))
            .chain(self.additional_interfaces.iter().map(|i| (i.url.clone(), i.transport.to_uppercase())));
        for (url, binding) in named {
            if !interfaces.iter().any(|i| i.url == url && i.protocol_binding == binding) {
                interfaces.push(AgentInterface {
                    url,
                    protocol_binding: binding,
                    protocol_version: VERSION.into(),
                    tenant: None,
                });
            }
        }
        AgentCard {
            name: self.name,
            description: self.description,
            version: self.version,
            supported_interfaces: interfaces,
            capabilities: AgentCapabilities {
                streaming: self.capabilities.streaming,
                push_notifications: self.capabilities.push_notifications,
                extensions: None,
                extended_agent_card: None,
            },
            default_input_modes: self.default_input_modes,
            default_output_modes: self.default_output_modes,
            skills: self
                .skills
                .into_iter()
                .map(|s| AgentSkill {
                    id: s.id,
                    name: s.name,
                    description: s.description,
                    tags: s.tags,
                    examples: s.examples,
                    input_modes: None,
                    output_modes: None,
                    security_requirements: None,
                })
                .collect(),
            provider: None,
            documentation_url: None,
            icon_url: None,
            security_schemes: None,
            security_requirements: None,
            signatures: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_v03_card_becomes_v1_interfaces_of_version_0_3() {
        let raw = json!({
            "protocolVersion": "0.3.0", "name": "old", "description": "d", "version": "1",
            "url": "http://a/rpc", "preferredTransport": "JSONRPC",
            "additionalInterfaces": [{"url": "http://a/rpc", "transport": "JSONRPC"}, {"url": "a:50051", "transport": "GRPC"}],
            "capabilities": {"streaming": true, "pushNotifications": false},
            "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
            "skills": [{"id": "s", "name": "S", "description": "x", "tags": ["t"]}]
        });
        assert!(is_v03_card(&raw));
        let card = serde_json::from_value::<V03Card>(raw).expect("a v0.3 card").into_v1();
        let interfaces: Vec<(&str, &str, &str)> = card
            .supported_interfaces
            .iter()
            .map(|i| (i.url.as_str(), i.protocol_binding.as_str(), i.protocol_version.as_str()))
            .collect();
        assert_eq!(interfaces, [("http://a/rpc", "JSONRPC", "0.3"), ("a:50051", "GRPC", "0.3")]);
        assert_eq!(card.capabilities.streaming, Some(true));
        assert_eq!(card.skills[0].id, "s");
        // A card with both generations' fields is a v1 card.
        assert!(!is_v03_card(&json!({"url": "http://a", "supportedInterfaces": []})));
    }
}
