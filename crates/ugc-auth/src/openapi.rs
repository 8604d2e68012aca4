//! The OpenAPI 3 document of the control API, written by hand.

use serde_json::{Value, json};

fn err(desc: &str) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok(desc: &str, schema: &str) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn body(schema: &str, required: bool) -> Value {
    json!({ "required": required, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn name_param() -> Value {
    json!([{ "name": "name", "in": "path", "required": true,
             "schema": { "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" } }])
}

/// The document served at `/api/v1/openapi.json`.
pub(crate) fn document() -> Value {
    let mut doc = base();
    for (section, more) in [("paths", registry_paths()), ("schemas", registry_schemas())] {
        let target = match section {
            "paths" => &mut doc["paths"],
            _ => &mut doc["components"]["schemas"],
        };
        if let (Some(t), Value::Object(m)) = (target.as_object_mut(), more) {
            t.extend(m);
        }
    }
    doc
}

/// The node registry's routes (one `json!` would pass the macro recursion
/// limit).
fn registry_paths() -> Value {
    json!({
            "/node/heartbeat": {
                "post": {
                    "summary": "Register a media node or renew it (media nodes; admin or node token)",
                    "description": "Sent every interval_ms (2 s). The database clock stamps the beat; a node without a beat for the down threshold (6 s) is down and gets no new work.",
                    "requestBody": body("NodeBeat", true),
                    "responses": {
                        "200": { "description": "Accepted", "content": { "application/json": { "schema": {
                            "type": "object",
                            "properties": {
                                "interval_ms": { "type": "integer" },
                                "down_after_ms": { "type": "integer" },
                                "leases": { "type": "array", "description": "A transcoder's transcode leases, when the topology names no transcoders (then it beats every third of the lease TTL)", "items": {
                                    "type": "object",
                                    "properties": {
                                        "stream": { "type": "string", "description": "Hub stream, live/<name>" },
                                        "epoch": { "type": "integer", "description": "State it on every relay push of the stream's renditions" },
                                        "source": { "type": "string", "description": "The publishing node to pull the stream from, http://host:port" }
                                    } } } } } } } },
                        "400": err("Bad JSON, id or URL"),
                        "401": err("Missing or bad token"),
                        "403": err("A creator token")
                    }
                }
            },
            "/nodes": {
                "get": {
                    "summary": "The node registry (admin)",
                    "responses": {
                        "200": { "description": "Every registered node, by id", "content": { "application/json": { "schema": {
                            "type": "array", "items": { "$ref": "#/components/schemas/Node" } } } } },
                        "401": err("Missing or bad token"),
                        "403": err("Not the admin")
                    }
                }
            },
            "/prometheus/targets": {
                "get": {
                    "summary": "Prometheus HTTP service discovery of the registered nodes (admin): [{targets: [host:port], labels: {node, role, __meta_ugc_state, __meta_ugc_url}}]",
                    "responses": {
                        "200": { "description": "Target groups, one per node", "content": { "application/json": { "schema": {
                            "type": "array", "items": { "type": "object" } } } } },
                        "401": err("Missing or bad token"),
                        "403": err("Not the admin")
                    }
                }
            },
            "/nodes/{id}": {
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "delete": {
                    "summary": "Forget a node taken out of service (admin); it registers again if it beats",
                    "responses": {
                        "204": { "description": "Forgotten" },
                        "401": err("Missing or bad token"),
                        "403": err("Not the admin"),
                        "404": err("No such node")
                    }
                }
            },
            "/plan": {
                "post": {
                    "summary": "Capacity planner (any signed-in user): input, inter-node and viewer bandwidth, DVR storage and the publishing, transcoding and origin servers of a size needed, from capacities this project's benchmarks measured per core (sources in the answer). Every input is optional: the guide's example, 16-core servers with a quarter free",
                    "requestBody": body("PlanRequest", false),
                    "responses": {
                        "200": ok("The plan", "Plan"),
                        "400": err("An input out of range"),
                        "401": err("Missing or bad token")
                    }
                }
            },
            "/streams/{name}/history": {
                "parameters": name_param(),
                "get": {
                    "summary": "The stream's last 15 minutes, one sample every 5 s (the panel's chart): ingest bitrate and frame rate, reader skips, the source viewers got, viewers; from this process's Hub, or in a cluster from its nodes' heartbeats (the publishing node's counters, the origins' viewers)",
                    "responses": {
                        "200": ok("Samples, oldest first", "StreamHistory"),
                        "401": err("Missing or bad token"),
                        "403": err("Another creator's stream"),
                        "404": err("No such stream")
                    }
                }
            },
            "/streams/{name}/publish": {
                "parameters": name_param(),
                "get": {
                    "summary": "Where the stream's publisher goes now: the publishing node carrying it, else the one it was placed on while it lives, else the least loaded",
                    "responses": {
                        "200": ok("Publish URLs", "PublishUrls"),
                        "401": err("Missing or bad token"),
                        "403": err("Another creator's stream"),
                        "404": err("No such stream")
                    }
                }
            }
    })
}

/// The node registry's schemas.
fn registry_schemas() -> Value {
    json!({
                "NodeBeat": {
                    "type": "object", "additionalProperties": false,
                    "required": ["id", "role", "url"],
                    "properties": {
                        "id": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
                        "role": { "type": "string", "enum": ["publish", "transcode", "origin", "all"] },
                        "url": { "type": "string", "description": "http://host:port, as other nodes reach it" },
                        "public": { "$ref": "#/components/schemas/PublicUrls" },
                        "capacity": { "type": "integer", "description": "streams at most; 0: not declared" },
                        "load": { "$ref": "#/components/schemas/NodeLoad" },
                        "streams": { "type": "array", "maxItems": 10000, "items": { "type": "string" } },
                        "standby": { "type": "array", "maxItems": 10000, "items": { "type": "string" }, "description": "those of streams carried for a backup publisher alone (the main one is on another node): main publish URLs avoid this node for them" },
                        "fallback": { "type": "array", "maxItems": 10000, "items": { "type": "string" }, "description": "those of streams on their fallback alone (the publisher dropped, within its grace): still transcode jobs, not live" },
                        "draining": { "type": "boolean", "default": false },
                        "priority": { "type": "integer", "default": 0, "description": "Transcoders: the live ones of the highest priority share the transcode leases (a main over its standby)" },
                        "stats": { "type": "array", "maxItems": 10000, "description": "counters of the published streams it carries (no renditions), for the panel's charts",
                            "items": { "type": "object", "required": ["stream"],
                                "properties": {
                                    "stream": { "type": "string" }, "bytes_in": { "type": "integer" }, "frames_in": { "type": "integer" },
                                    "skips": { "type": "integer" }, "source": { "type": "integer", "description": "0 main, 1 backup, 2 fallback" },
                                    "viewers": { "type": "integer", "description": "HLS viewers here, where the node counts them" } } } },
                        "timelines": { "type": "object", "additionalProperties": { "type": "integer" }, "description": "the timeline id (unix ms of the stream's start at its first node) of each published stream its Hub holds with media, one whose publisher left within its grace included; a main publisher that arrives at another publishing node goes on with it" }
                    }
                },
                "NodeLoad": {
                    "type": "object",
                    "properties": {
                        "streams": { "type": "integer" },
                        "cpu": { "type": "number", "description": "fraction of the machine, 0..1" },
                        "egress_bps": { "type": "integer" }
                    }
                },
                "PublicUrls": {
                    "type": "object",
                    "properties": {
                        "host": { "type": "string" },
                        "rtmp_port": { "type": "integer" },
                        "srt_port": { "type": "integer" },
                        "http_port": { "type": "integer" },
                        "http_base": { "type": "string", "nullable": true }
                    }
                },
                "Node": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "role": { "type": "string" },
                        "url": { "type": "string" },
                        "state": { "type": "string", "enum": ["live", "draining", "down"] },
                        "load": { "$ref": "#/components/schemas/NodeLoad" },
                        "streams": { "type": "array", "items": { "type": "string" } },
                        "standby": { "type": "array", "items": { "type": "string" }, "description": "those of streams it stands by for (a backup publisher alone); absent when none" },
                        "fallback": { "type": "array", "items": { "type": "string" }, "description": "those of streams on their fallback alone; absent when none" },
                        "capacity": { "type": "integer" },
                        "public": { "allOf": [{ "$ref": "#/components/schemas/PublicUrls" }], "nullable": true },
                        "last_seen": { "type": "integer", "description": "unix milliseconds, database clock" },
                        "age_ms": { "type": "integer" },
                        "registered_at": { "type": "integer", "description": "unix seconds" },
                        "priority": { "type": "integer", "description": "Transcoders: the live ones of the highest priority share the transcode leases" },
                        "leases": {
                            "type": "array",
                            "description": "Transcoders: the transcode leases held now (absent when none)",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "stream": { "type": "string" },
                                    "epoch": { "type": "integer", "description": "grows on every claim (to one more, or to the control plane database's clock in unix ms if that is more); origins refuse a lower one" },
                                    "expires_in_ms": { "type": "integer", "description": "until it ends unless renewed" }
                                }
                            }
                        }
                    }
                }
    })
}

fn base() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "ugc control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Streams, stream keys, play tokens. Bearer auth with the admin token or a creator token; creators see only their own streams."
        },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "bearer": [] }],
        "paths": {
            "/streams": {
                "post": {
                    "summary": "Create a stream with a fresh key",
                    "requestBody": body("NewStream", true),
                    "responses": {
                        "201": ok("The stream, its key and publish URLs", "Stream"),
                        "400": err("Bad JSON, name or field"),
                        "401": err("Missing or bad token"),
                        "409": err("A stream of that name exists")
                    }
                },
                "get": {
                    "summary": "List the streams the caller may see",
                    "responses": {
                        "200": ok("The streams", "StreamList"),
                        "401": err("Missing or bad token")
                    }
                }
            },
            "/streams/{name}": {
                "parameters": name_param(),
                "get": {
                    "summary": "Read a stream",
                    "responses": {
                        "200": ok("The stream", "Stream"),
                        "400": err("Bad name"),
                        "401": err("Missing or bad token"),
                        "403": err("Another creator's stream"),
                        "404": err("No such stream")
                    }
                },
                "patch": {
                    "summary": "Change a stream; running servers apply it without restart",
                    "requestBody": body("StreamPatch", true),
                    "responses": {
                        "200": ok("The changed stream", "Stream"),
                        "400": err("Bad JSON, name or field"),
                        "401": err("Missing or bad token"),
                        "403": err("Another creator's stream"),
                        "404": err("No such stream")
                    }
                },
                "delete": {
                    "summary": "Delete a stream (drops a live publisher)",
                    "responses": {
                        "204": { "description": "Deleted" },
                        "400": err("Bad name"),
                        "401": err("Missing or bad token"),
                        "403": err("Another creator's stream"),
                        "404": err("No such stream")
                    }
                }
            },
            "/streams/{name}/key": {
                "parameters": name_param(),
                "post": {
                    "summary": "Rotate the stream key: the old key stops at once and its publisher is dropped",
                    "responses": {
                        "200": ok("The new key", "Key"),
                        "400": err("Bad name"),
                        "401": err("Missing or bad token"),
                        "403": err("Another creator's stream"),
                        "404": err("No such stream")
                    }
                }
            },
            "/streams/{name}/play": {
                "parameters": name_param(),
                "post": {
                    "summary": "Open a viewer session: a play URL with a signed token",
                    "requestBody": body("PlayRequest", false),
                    "responses": {
                        "200": ok("The play URL", "Play"),
                        "400": err("Bad JSON, ttl_s or bind_ip"),
                        "401": err("Missing or bad token"),
                        "403": err("Another creator's stream"),
                        "404": err("No such stream")
                    }
                }
            },
            "/sessions/{id}": {
                "parameters": [{ "name": "id", "in": "path", "required": true,
                                 "schema": { "type": "string", "pattern": "^[0-9a-f]{32}$" } }],
                "delete": {
                    "summary": "Revoke a viewer session: its token gets 403 from now on",
                    "responses": {
                        "204": { "description": "Revoked" },
                        "401": err("Missing or bad token"),
                        "403": err("Session of another creator's stream"),
                        "404": err("No such session")
                    }
                }
            },
            "/creators": {
                "post": {
                    "summary": "Create a creator (admin only); the token is shown once",
                    "requestBody": body("NewCreator", false),
                    "responses": {
                        "201": ok("The creator id and token", "Creator"),
                        "400": err("Bad JSON or name"),
                        "401": err("Missing or bad token"),
                        "403": err("Not the admin")
                    }
                }
            },
            "/settings": {
                "get": {
                    "summary": "Every stream's settings and the feed version they are at (media nodes; admin or node token)",
                    "responses": {
                        "200": ok("The snapshot", "SettingsSnapshot"),
                        "401": err("Missing or bad token"),
                        "403": err("A creator token")
                    }
                }
            },
            "/changes": {
                "get": {
                    "summary": "Settings change feed as Server-Sent Events (media nodes; admin or node token)",
                    "description": "Events: `change` (data: SettingsChange; id: the version after it) and `snapshot` (data: SettingsSnapshot), sent first when there is no Last-Event-ID or it is too old to resume from. A `: keep-alive` comment every 10 s.",
                    "parameters": [{ "name": "Last-Event-ID", "in": "header", "required": false,
                                     "description": "resume after this version",
                                     "schema": { "type": "string", "pattern": "^[0-9a-f]+-[0-9]+$" } }],
                    "responses": {
                        "200": { "description": "The event stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } },
                        "401": err("Missing or bad token"),
                        "403": err("A creator token")
                    }
                }
            },
            "/node/publish": {
                "post": {
                    "summary": "Decide a publisher arriving at a media node (media nodes; admin or node token)",
                    "description": "The decision this control plane's own ingest would take, external auth backend included. A node may keep an allow for 2 s; a rotation or deletion reaches it through the settings feed.",
                    "requestBody": body("PublishCheck", true),
                    "responses": {
                        "200": ok("The decision", "PublishAnswer"),
                        "400": err("Bad JSON or protocol"),
                        "401": err("Missing or bad token"),
                        "403": err("A creator token")
                    }
                }
            },
            "/node/topology": {
                "get": {
                    "summary": "Where media nodes send streams: transcoders and origins (media nodes; admin or node token)",
                    "responses": {
                        "200": ok("The topology", "Topology"),
                        "401": err("Missing or bad token"),
                        "403": err("A creator token")
                    }
                }
            },
            "/node/play-auth": {
                "get": {
                    "summary": "The play-token key and revoked sessions, for origins that check viewers' tokens themselves (media nodes; admin or node token; polled every 2 s)",
                    "responses": {
                        "200": ok("The key and revocations", "PlayAuth"),
                        "401": err("Missing or bad token"),
                        "403": err("A creator token")
                    }
                }
            },
            "/node/play/{name}": {
                "parameters": name_param(),
                "get": {
                    "summary": "The origin a new viewer of the stream goes to: of the live origins carrying it, the one with the fewest viewers (beats' counts plus viewers sent there lately); the viewer counts there. Asked by origins that balance viewers by redirect (media nodes; admin or node token)",
                    "responses": {
                        "200": ok("The origin", "PlayNode"),
                        "400": err("Not a stream name"),
                        "401": err("Missing or bad token"),
                        "403": err("A creator token"),
                        "404": err("No live origin")
                    }
                }
            },
            "/node/pull/{name}": {
                "parameters": name_param(),
                "get": {
                    "summary": "Where an origin that carries streams on demand (--balance pull) pulls the stream from: of the live origins carrying it by push, the least loaded, with the Hub streams it carries of it (the source and its renditions). Query `from`: the asking node's id, never answered. Media nodes; admin or node token",
                    "responses": {
                        "200": ok("The origin to pull from", "PullFrom"),
                        "400": err("Not a stream name"),
                        "401": err("Missing or bad token"),
                        "403": err("A creator token"),
                        "404": err("No live origin carries it")
                    }
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": { "200": { "description": "OpenAPI 3 document" } }
                }
            }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "NewStream": {
                    "type": "object", "required": ["name"], "additionalProperties": false,
                    "properties": {
                        "name": { "type": "string", "pattern": "^[a-z0-9_-]{1,64}$" },
                        "title": { "type": "string", "maxLength": 200 },
                        "private": { "type": "boolean", "default": false },
                        "srt_passphrase": { "type": "string", "minLength": 10, "maxLength": 79 },
                        "transcode": { "type": "string", "description": "off, default or a configured profile", "default": "off" },
                        "dvr_hours": { "type": "integer", "minimum": 0, "maximum": 8760, "default": 0 },
                        "restream": { "type": "array", "maxItems": 16, "items": { "type": "string", "pattern": "^(rtmps?|srt)://" } },
                        "fallback": { "type": "string", "description": "what viewers get while no publisher is there: slate (a generated picture with silence), off, an http(s):// URL of a video, or a file name in the server's --fallback-dir; absent or null: the server's --fallback" },
                        "source_timeout_ms": { "type": "integer", "description": "how long the live source may send nothing before the backup or the fallback takes over; 0: the server's (3000)", "default": 0, "oneOf": [{ "const": 0 }, { "minimum": 500, "maximum": 60000 }] }
                    }
                },
                "StreamPatch": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "title": { "type": "string", "maxLength": 200 },
                        "private": { "type": "boolean" },
                        "srt_passphrase": { "type": "string", "nullable": true, "minLength": 10, "maxLength": 79 },
                        "transcode": { "type": "string" },
                        "dvr_hours": { "type": "integer", "minimum": 0, "maximum": 8760 },
                        "restream": { "type": "array", "maxItems": 16, "items": { "type": "string", "pattern": "^(rtmps?|srt)://" } },
                        "fallback": { "type": ["string", "null"], "description": "as in NewStream; null: back to the server's" },
                        "source_timeout_ms": { "type": "integer", "oneOf": [{ "const": 0 }, { "minimum": 500, "maximum": 60000 }] }
                    }
                },
                "Stream": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "title": { "type": "string" },
                        "owner": { "type": "string" },
                        "private": { "type": "boolean" },
                        "srt_passphrase": { "type": "string", "nullable": true },
                        "transcode": { "type": "string" },
                        "dvr_hours": { "type": "integer" },
                        "restream": { "type": "array", "items": { "type": "string" } },
                        "fallback": { "type": ["string", "null"], "description": "null: the server's" },
                        "source_timeout_ms": { "type": "integer", "description": "0: the server's" },
                        "created_at": { "type": "integer", "description": "unix seconds" },
                        "key": { "type": "string" },
                        "publish": { "$ref": "#/components/schemas/PublishUrls" },
                        "play": { "type": "string", "description": "playlist URL (private streams need ?token=)" },
                        "whep": { "type": "string", "description": "WebRTC play (WHEP) on the same node: POST an SDP offer (private streams: the play token as bearer)" },
                        "live": { "type": "boolean" },
                        "viewers": { "type": ["integer", "null"], "description": "HLS viewers now (play sessions seen in the last 30 s), where this process's origin counts them (ugc-server --viewer-count on or beacons); else null" },
                        "source": {
                            "type": ["object", "null"],
                            "description": "on a node carrying the stream: the source viewers get and the sources attached (main, backup, fallback)",
                            "properties": {
                                "active": { "type": "string", "enum": ["main", "backup", "fallback"] },
                                "attached": { "type": "array", "items": { "type": "string", "enum": ["main", "backup", "fallback"] } }
                            }
                        }
                    }
                },
                "StreamList": {
                    "type": "object",
                    "properties": { "streams": { "type": "array", "items": { "$ref": "#/components/schemas/Stream" } } }
                },
                "PlanRequest": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "streams": { "type": "integer", "minimum": 0, "maximum": 1000000, "default": 10 },
                        "input_video_kbps": { "type": "number", "default": 5000 },
                        "input_audio_kbps": { "type": "number", "default": 192 },
                        "ladder": { "type": "array", "maxItems": 16, "description": "top rung first; [] for no transcoding; default 1080p 4000+192, 720p 2000+128, 360p 1000+96",
                            "items": { "type": "object", "required": ["name", "video_kbps", "audio_kbps"], "additionalProperties": false,
                                "properties": { "name": { "type": "string" }, "video_kbps": { "type": "number" }, "audio_kbps": { "type": "number" } } } },
                        "viewers": { "type": "integer", "minimum": 0, "maximum": 10_000_000_000_i64, "default": 100000 },
                        "viewer_rung": { "type": "string", "description": "the rung viewers watch (default the top one)" },
                        "cdn_share": { "type": "number", "minimum": 0, "maximum": 1, "default": 0 },
                        "origins": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 2 },
                        "dvr_hours": { "type": "number", "default": 10 },
                        "dvr_streams": { "type": "integer", "minimum": 0, "maximum": 1000000, "default": 10 },
                        "cores": { "type": "number", "default": 16, "description": "cores of one server" },
                        "headroom": { "type": "number", "minimum": 0, "maximum": 0.95, "default": 0.25, "description": "share of each server kept free" },
                        "streams_per_publish_server": { "type": "number", "description": "instead of the measured capacity" },
                        "ladders_per_transcode_server": { "type": "number", "description": "instead of the measured capacity" },
                        "gbps_per_origin": { "type": "number", "description": "instead of the measured capacity" }
                    }
                },
                "Plan": {
                    "type": "object",
                    "properties": {
                        "input_mbps": { "type": "number" }, "ladder_kbps_per_stream": { "type": "number" },
                        "ladder_output_mbps": { "type": "number" }, "ladder_output_note": { "type": "string" },
                        "inter_node_mbps": { "type": "number" }, "viewers_mbps": { "type": "number" },
                        "origin_egress_mbps": { "type": "number" }, "dvr_ladder_gb": { "type": "number" }, "dvr_top_gb": { "type": "number" },
                        "servers": { "type": "object", "properties": { "publish": { "type": "integer" }, "transcode": { "type": "integer", "description": "one more as standby" }, "origin": { "type": "integer" }, "cores": { "type": "number" }, "headroom": { "type": "number" } } },
                        "capacity": { "type": "object", "description": "of one server, and what one core did in the benchmarks with their sources" },
                        "guide_example": { "type": "boolean" }
                    }
                },
                "StreamHistory": {
                    "type": "object",
                    "required": ["every_ms", "samples"],
                    "properties": {
                        "every_ms": { "type": "integer", "description": "time between samples" },
                        "samples": { "type": "array", "items": {
                            "type": "object",
                            "required": ["t", "bitrate_bps", "fps", "skips", "source", "viewers"],
                            "properties": {
                                "t": { "type": "integer", "description": "end of the interval, unix ms" },
                                "bitrate_bps": { "type": "integer", "description": "ingest bitrate over the interval" },
                                "fps": { "type": "number", "description": "frames in per second (audio and video)" },
                                "skips": { "type": "integer", "description": "slow readers' skips to a keyframe in the interval (frames dropped for them)" },
                                "source": { "type": ["string", "null"], "enum": ["main", "backup", "fallback", null], "description": "what viewers got; null: offline" },
                                "viewers": { "type": ["integer", "null"], "description": "HLS viewers, where this server counts them" }
                            }
                        } }
                    }
                },
                "PublishUrls": {
                    "type": "object",
                    "properties": {
                        "rtmp": { "type": "string" }, "srt": { "type": "string" }, "whip": { "type": "string" },
                        "rtmps": { "type": ["string", "null"], "description": "RTMP over TLS (OBS: rtmps://host:1936/live), null when the server has no certificate" },
                        "backup": {
                            "type": "object",
                            "description": "URLs for an encoder's backup output: it stands by while the main publisher is live and takes over within source_timeout_ms + 1 GOP when it is not. In a cluster of two or more publishing nodes, on another node than the main URL (a second publishing point)",
                            "properties": { "rtmp": { "type": "string" }, "srt": { "type": "string" } }
                        }
                    }
                },
                "Key": {
                    "type": "object",
                    "properties": { "key": { "type": "string" }, "publish": { "$ref": "#/components/schemas/PublishUrls" } }
                },
                "PlayRequest": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "ttl_s": { "type": "integer", "minimum": 1, "description": "default 3600, at most 7 days" },
                        "bind_ip": { "type": "string", "description": "only this client address may use the token" }
                    }
                },
                "Play": {
                    "type": "object",
                    "properties": {
                        "url": { "type": "string" },
                        "whep": { "type": "string", "description": "WebRTC play (WHEP) on the same origin; the token goes as Authorization: Bearer" },
                        "token": { "type": "string" },
                        "expires_at": { "type": "integer", "description": "unix seconds" },
                        "session": { "type": "string" }
                    }
                },
                "StreamSettings": {
                    "type": "object",
                    "properties": {
                        "private": { "type": "boolean" },
                        "transcode": { "type": "string" },
                        "dvr_hours": { "type": "integer" },
                        "restream": { "type": "array", "items": { "type": "string" } },
                        "srt_passphrase": { "type": "string", "nullable": true },
                        "fallback": { "type": ["string", "null"] },
                        "source_timeout_ms": { "type": "integer" }
                    }
                },
                "SettingsSnapshot": {
                    "type": "object",
                    "properties": {
                        "version": { "type": "string", "description": "<epoch>-<seq>" },
                        "streams": { "type": "object", "additionalProperties": { "$ref": "#/components/schemas/StreamSettings" } }
                    }
                },
                "SettingsChange": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "kind": { "type": "string", "enum": ["created", "updated", "key_rotated", "deleted"] },
                        "settings": { "allOf": [{ "$ref": "#/components/schemas/StreamSettings" }], "nullable": true }
                    }
                },
                "PlayAuth": {
                    "type": "object", "required": ["key", "revoked"],
                    "properties": {
                        "key": { "type": "string", "description": "The play-token HMAC secret, base64url without padding" },
                        "revoked": { "type": "array", "items": { "type": "string", "pattern": "^[0-9a-f]{32}$" }, "description": "Sessions revoked before their tokens expire" }
                    }
                },
                "PullFrom": {
                    "type": "object", "required": ["node", "url", "streams"],
                    "properties": {
                        "node": { "type": "string", "description": "The origin's node id" },
                        "url": { "type": "string", "description": "Its HTTP base as nodes reach it (relay), http://host:port" },
                        "streams": { "type": "array", "items": { "type": "string" }, "description": "The Hub streams to pull: live/<name> and live/<name>/<rendition>" }
                    }
                },
                "PlayNode": {
                    "type": "object", "required": ["node", "url"],
                    "properties": {
                        "node": { "type": "string", "description": "The origin's node id" },
                        "url": { "type": "string", "description": "Its public HTTP base, http://host:port" }
                    }
                },
                "Topology": {
                    "type": "object",
                    "properties": {
                        "transcoders": { "type": "array", "items": { "type": "string" }, "description": "http://host:port; publishing nodes push here" },
                        "origins": { "type": "array", "items": { "type": "string" }, "description": "http://host:port; transcoders push here, publishing nodes too when there is no transcoder" }
                    }
                },
                "PublishCheck": {
                    "type": "object", "additionalProperties": false,
                    "required": ["protocol", "app", "key", "client_ip"],
                    "properties": {
                        "protocol": { "type": "string", "enum": ["rtmp", "srt", "whip"] },
                        "app": { "type": "string" },
                        "key": { "type": "string" },
                        "client_ip": { "type": "string", "description": "the publisher's address as the node saw it" },
                        "full": { "type": "string", "description": "the asking node's id when its declared capacity is reached: a stream it does not carry yet is then denied (unavailable) with the URL of the node with the most room in the reason, and placed there" }
                    }
                },
                "PublishAnswer": {
                    "type": "object",
                    "required": ["decision"],
                    "properties": {
                        "decision": { "type": "string", "enum": ["allow", "deny"] },
                        "stream": { "type": "string", "description": "allow: <app>/<name>" },
                        "role": { "type": "string", "enum": ["main", "backup"], "description": "allow: the source the publisher is (absent: main)" },
                        "main_node": { "type": "string", "description": "allow of a backup publisher: the relay URL of the publishing node the main publisher is sent to; the backup's node pushes the stream there too (as ?role=backup)" },
                        "timeline": { "type": "integer", "description": "allow of a main publisher: the stream's timeline id, while a node reported it within the last 30 s (its old node killed included); the asking node's stream goes on with it, its first frame landing at the timeline's age" },
                        "kind": { "type": "string", "enum": ["unauthorized", "bad_name", "unavailable"] },
                        "reason": { "type": "string" }
                    }
                },
                "NewCreator": {
                    "type": "object", "additionalProperties": false,
                    "properties": { "name": { "type": "string", "maxLength": 64 } }
                },
                "Creator": {
                    "type": "object",
                    "properties": { "id": { "type": "string" }, "token": { "type": "string" } }
                }
            }
        }
    })
}
