//! Routing: which registered agent a message goes to.

use serde_json::Value;

use crate::agent::AgentRecord;

/// Routing configured by the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingRules {
    /// Skill id → agent name, tried before agents' own cards.
    pub skills: Vec<(String, String)>,
    /// Where a message goes when it names neither an agent nor a skill.
    pub default_agent: Option<String>,
}

/// Why a message has nowhere to go; the text is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoRoute(pub String);

/// The client's explicit choice, from message metadata
/// `{"switchyard": {"agent": "NAME", "skill": "ID"}}` (either key optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub agent: Option<String>,
    pub skill: Option<String>,
}

impl Target {
    /// Reads the target from a message's metadata.
    pub fn from_metadata(metadata: Option<&std::collections::HashMap<String, Value>>) -> Target {
        let hint = metadata.and_then(|m| m.get("switchyard"));
        let field = |key: &str| hint.and_then(|h| h.get(key)).and_then(Value::as_str).map(str::to_owned);
        Target { agent: field("agent"), skill: field("skill") }
    }
}

/// Picks the agent: the one named; else one offering the skill (configured
/// routes first, then agents' cards: closed breakers before open ones, then
/// fewest recent failures); else the default agent.
pub fn choose(target: &Target, agents: &[AgentRecord], rules: &RoutingRules) -> Result<String, NoRoute> {
    let registered = |name: &str| agents.iter().any(|a| a.name == name);
    if let Some(name) = &target.agent {
        return if registered(name) {
            Ok(name.clone())
        } else {
            Err(NoRoute(format!("no agent named {name:?} is registered")))
        };
    }
    if let Some(skill) = &target.skill {
        if let Some((_, agent)) = rules.skills.iter().find(|(s, a)| s == skill && registered(a)) {
            return Ok(agent.clone());
        }
        // Agents whose circuit breaker is open go last: work for a skill goes
        // to another agent offering it while one is failing.
        let now = chrono::Utc::now();
        return agents
            .iter()
            .filter(|a| a.offers_skill(skill))
            .min_by_key(|a| (a.breaker_open_until.is_some_and(|until| until > now), a.consecutive_failures))
            .map(|a| a.name.clone())
            .ok_or_else(|| NoRoute(format!("no registered agent offers skill {skill:?}")));
    }
    match &rules.default_agent {
        Some(name) if registered(name) => Ok(name.clone()),
        Some(name) => Err(NoRoute(format!("the default agent {name:?} is not registered"))),
        None => Err(NoRoute(
            "no agent was named (metadata switchyard.agent), no skill was asked for (switchyard.skill), \
             and no default agent is configured"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent(name: &str, skills: &[&str], failures: i32) -> AgentRecord {
        AgentRecord {
            name: name.into(),
            url: format!("http://{name}"),
            card: Some(json!({"skills": skills.iter().map(|s| json!({"id": s})).collect::<Vec<_>>()})),
            card_fetched_at: None,
            consecutive_failures: failures,
            breaker_open_until: None,
        }
    }

    #[test]
    fn routes_by_name_then_skill_then_default() {
        let agents = [agent("a", &["sum"], 3), agent("b", &["sum", "tr"], 0), agent("c", &[], 0)];
        let rules = RoutingRules { skills: vec![("tr".into(), "c".into())], default_agent: Some("a".into()) };
        let by = |agent: Option<&str>, skill: Option<&str>| {
            choose(&Target { agent: agent.map(Into::into), skill: skill.map(Into::into) }, &agents, &rules)
        };
        assert_eq!(by(Some("c"), None), Ok("c".into()));
        assert!(by(Some("zz"), None).is_err());
        assert_eq!(by(None, Some("sum")), Ok("b".into()), "the healthier of two");
        assert_eq!(by(None, Some("tr")), Ok("c".into()), "a configured route wins over cards");
        assert!(by(None, Some("nope")).is_err());
        assert_eq!(by(None, None), Ok("a".into()));
        assert!(choose(&Target::default(), &agents, &RoutingRules::default()).is_err());
    }

    #[test]
    fn skill_routing_avoids_an_agent_whose_breaker_is_open() {
        let mut failing = agent("a", &["sum"], 0);
        failing.breaker_open_until = Some(chrono::Utc::now() + chrono::Duration::minutes(1));
        let agents = [failing, agent("b", &["sum"], 2)];
        let target = Target { agent: None, skill: Some("sum".into()) };
        assert_eq!(choose(&target, &agents, &RoutingRules::default()), Ok("b".into()));
    }

    #[test]
    fn the_target_comes_from_message_metadata() {
        let metadata: std::collections::HashMap<String, Value> =
            [("switchyard".to_owned(), json!({"agent": "x", "skill": "y"}))].into();
        assert_eq!(Target::from_metadata(Some(&metadata)), Target { agent: Some("x".into()), skill: Some("y".into()) });
        assert_eq!(Target::from_metadata(None), Target::default());
    }
}
