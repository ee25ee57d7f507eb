//! A job's ports and their topics: declared by the records they carry, found in the job's processor entry of the
//! topology. Topic names live only in the topology file; a job names its topics by role (`impressions`, `hourly`).

use adstream_topology::{Processor, Topology};

/// Which list of a processor entry a port's topic is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortList {
    /// `inputs`: read as keyed, co-partitioned with the other inputs.
    Input,
    /// `repartition`: read with another key and re-keyed by the job through an internal topic.
    Repartition,
    /// `outputs`.
    Output,
}

impl PortList {
    fn describe(self) -> &'static str {
        match self {
            PortList::Input => "input",
            PortList::Repartition => "topic to repartition",
            PortList::Output => "output",
        }
    }
}

/// One topic a job reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    /// The job's name for it (`impressions`, `hourly`): how its constructor asks for the topic.
    pub role: &'static str,
    /// Where the topic is listed.
    pub list: PortList,
    /// Full name of the Avro record the topic carries (its `value_schema` in the topology).
    pub record: &'static str,
    /// A part of the topic's name that tells it apart when several topics of the list carry the same record
    /// (`hourly` and `daily` metrics); empty when the record alone decides.
    pub name_contains: &'static str,
    /// Whether the processor entry must have it; an optional port without a topic is left unconnected.
    pub required: bool,
}

impl Port {
    /// A required port.
    pub const fn new(role: &'static str, list: PortList, record: &'static str) -> Port {
        Port {
            role,
            list,
            record,
            name_contains: "",
            required: true,
        }
    }

    /// This port, told apart by `part` of its topic's name.
    pub const fn named(mut self, part: &'static str) -> Port {
        self.name_contains = part;
        self
    }

    /// This port, optional.
    pub const fn optional(mut self) -> Port {
        self.required = false;
        self
    }
}

/// Why a job's ports cannot be connected to the topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WiringError {
    /// No processor entry has the application id's name.
    #[error("no processor named '{name}' in {origin}")]
    NoProcessor {
        /// The application id.
        name: String,
        /// The topology file.
        origin: String,
    },
    /// A required port has no topic.
    #[error("processor {processor} in {origin} has no {list} carrying {record}{}", contains_note(.contains))]
    Missing {
        /// The processor.
        processor: String,
        /// The topology file.
        origin: String,
        /// Which list.
        list: &'static str,
        /// The record the port carries.
        record: &'static str,
        /// The part of the name that tells it apart.
        contains: &'static str,
    },
    /// Several topics fit one port.
    #[error("processor {processor} in {origin}: {} topics carry {record}: {topics:?}", .topics.len())]
    Ambiguous {
        /// The processor.
        processor: String,
        /// The topology file.
        origin: String,
        /// The record the port carries.
        record: &'static str,
        /// The topics that fit.
        topics: Vec<String>,
    },
    /// A listed topic is not declared in the topology.
    #[error("topic {topic} is not in {origin}")]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// The topology file.
        origin: String,
    },
    /// The job asked for a role it did not declare (a bug in the job).
    #[error("job asked for port '{0}', which it does not declare")]
    UndeclaredPort(String),
}

fn contains_note(contains: &str) -> String {
    if contains.is_empty() {
        String::new()
    } else {
        format!(" with '{contains}' in its name")
    }
}

/// A connected port: its topic and the topic's partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Connection {
    role: &'static str,
    topic: String,
    partitions: i32,
}

/// A job's ports connected to the topics of its processor entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    application_id: String,
    connections: Vec<Connection>,
}

impl Wiring {
    /// Connects `ports` to the topics of processor `application_id` in `topology`: each port to the one topic of
    /// its list carrying its record (and with its name part).
    pub fn resolve(
        topology: &Topology,
        application_id: &str,
        ports: &[Port],
    ) -> Result<Wiring, WiringError> {
        let processor =
            topology
                .processor(application_id)
                .ok_or_else(|| WiringError::NoProcessor {
                    name: application_id.to_owned(),
                    origin: topology.origin().to_owned(),
                })?;
        let mut connections = Vec::with_capacity(ports.len());
        for port in ports {
            if let Some(topic) = find(topology, processor, port)? {
                let partitions = topology
                    .topic(&topic)
                    .map(|t| t.partitions)
                    .ok_or_else(|| WiringError::UnknownTopic {
                        topic: topic.clone(),
                        origin: topology.origin().to_owned(),
                    })?;
                connections.push(Connection {
                    role: port.role,
                    topic,
                    partitions,
                });
            }
        }
        Ok(Wiring {
            application_id: application_id.to_owned(),
            connections,
        })
    }

    /// A wiring given topic by topic, `(role, topic, partitions)`: for tests and simulations without a topology.
    pub fn from_topics(application_id: &str, topics: &[(&'static str, &str, i32)]) -> Wiring {
        Wiring {
            application_id: application_id.to_owned(),
            connections: topics
                .iter()
                .map(|&(role, topic, partitions)| Connection {
                    role,
                    topic: topic.to_owned(),
                    partitions,
                })
                .collect(),
        }
    }

    /// The application id (processor name) the wiring is for.
    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// The topic of port `role`, if connected.
    pub fn optional(&self, role: &str) -> Option<&str> {
        self.connection(role).map(|c| c.topic.as_str())
    }

    /// The topic of port `role`.
    pub fn topic(&self, role: &str) -> Result<String, WiringError> {
        self.connection(role)
            .map(|c| c.topic.clone())
            .ok_or_else(|| WiringError::UndeclaredPort(role.to_owned()))
    }

    /// The partition count of port `role`'s topic.
    pub fn partitions(&self, role: &str) -> Result<i32, WiringError> {
        self.connection(role)
            .map(|c| c.partitions)
            .ok_or_else(|| WiringError::UndeclaredPort(role.to_owned()))
    }

    /// `(role, topic)` of every connected port, in declaration order.
    pub fn topics(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.connections.iter().map(|c| (c.role, c.topic.as_str()))
    }

    fn connection(&self, role: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.role == role)
    }
}

/// The topic of `processor` that `port` connects to; None for an optional port without one.
fn find(
    topology: &Topology,
    processor: &Processor,
    port: &Port,
) -> Result<Option<String>, WiringError> {
    let list = match port.list {
        PortList::Input => &processor.inputs,
        PortList::Repartition => &processor.repartition,
        PortList::Output => &processor.outputs,
    };
    let found: Vec<&String> = list
        .iter()
        .filter(|name| {
            topology.topic(name).and_then(|t| t.value_schema.as_deref()) == Some(port.record)
                && name.contains(port.name_contains)
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(Some((*one).clone())),
        [] if !port.required => Ok(None),
        [] => Err(WiringError::Missing {
            processor: processor.name.clone(),
            origin: topology.origin().to_owned(),
            list: port.list.describe(),
            record: port.record,
            contains: port.name_contains,
        }),
        many => Err(WiringError::Ambiguous {
            processor: processor.name.clone(),
            origin: topology.origin().to_owned(),
            record: port.record,
            topics: many.iter().map(|t| (*t).clone()).collect(),
        }),
    }
}
