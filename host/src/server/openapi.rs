//! The OpenAPI 3.1 description of the API, served at `/openapi.json`.

use serde_json::{json, Value};

fn error_responses(codes: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for c in codes {
        let what = match *c {
            "400" => "The request is malformed (bad JSON, unknown field, invalid target).",
            "401" => "The bearer token is missing or wrong.",
            "403" => "The token's role may not use this route, or the job is outside an operator's scope.",
            "404" => "No such snapshot, item, job, policy or route.",
            "409" => "The job has already finished (or, with several workers, runs on another worker: cancel it there), a policy of that name exists, or the policy's previous run has jobs left.",
            "503" => "The state database (a shared PostgreSQL) cannot be reached or refused the login; the server reconnects by itself, try again.",
            _ => "The server failed.",
        };
        m.insert((*c).into(), json!({ "description": what, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }));
    }
    Value::Object(m)
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// The document, each operation with the roles that may call it
/// (`x-roles`, from the route table) and a 403 answer where a role is
/// refused.
pub(super) fn document() -> Value {
    let mut doc = paths();
    for (method, path, need) in super::roles::ROUTES {
        let op = &mut doc["paths"][*path][method.to_lowercase()];
        if !op.is_object() {
            continue;
        }
        let roles: Vec<&str> = need.roles().iter().map(|r| r.as_str()).collect();
        op["x-roles"] = json!(roles);
        if *need != super::roles::Need::Public {
            let summary = op["summary"].as_str().unwrap_or_default().to_owned();
            op["summary"] = json!(format!("{summary} Roles: {}.", roles.join(", ")));
            op["responses"]["403"] = error_responses(&["403"])["403"].clone();
        }
    }
    doc
}

fn paths() -> Value {
    let mut doc = core();
    // Apart: one `json!` of the whole document is beyond the macro's
    // recursion limit.
    doc["paths"]["/hypervisors"] = json!({ "get": {

                "summary": "The registered hypervisors and their VMs: each VM's run state and whether its guest agent answers (asked with a 1 s timeout), and the containers attached to it now (from the attachment journal).",
                "responses": merge(json!({ "200": ok("Hypervisors.", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Hypervisor" } })) }),
                    error_responses(&["401", "500"]))
    }});
    if let Some(kinds) = doc["components"]["schemas"]["JobRequest"]["oneOf"].as_array_mut() {
        kinds.push(json!({ "type": "object", "required": ["kind"], "properties": {
            "kind": { "const": "verify" },
            "verify": { "type": "object", "additionalProperties": false, "properties": {
                "read_data": { "type": "boolean", "description": "read every byte of every pack and check each chunk (`attache verify --read-data`)" }
            }}
        }}));
        kinds.push(json!({ "type": "object", "required": ["kind", "discover"], "properties": {
            "kind": { "const": "discover" },
            "discover": { "type": "object", "required": ["target"], "additionalProperties": false, "properties": {
                "target": { "type": "string", "description": "`HYPERVISOR/VM`: the container is attached, the plugins' discover runs in the guest, and it is detached" },
                "plugin": { "type": "string", "description": "ask this plugin only; default: every plugin of the container whose plan the policy allows" },
                "scope": { "type": "string", "description": "list below this item; default: each plugin's roots" },
                "depth": { "type": "integer", "minimum": 0, "description": "levels below the scope (default 0: its children)" },
                "timeout_secs": { "type": "integer", "minimum": 0, "description": "fail and clean up when a runner has not finished by then" },
                "options": { "type": "object", "additionalProperties": { "type": "string" }, "description": "plugin options KEY: VALUE, given to every plugin asked; job views show the values redacted" },
                "app_password": { "type": "string", "description": "the application's (database's) password; shown redacted" },
                "app_password_file": { "type": "string", "description": "a file on the server whose first line is the application's password" }
            }}
        }}));
    }
    fleet(&mut doc);
    doc["components"]["schemas"]["Hypervisor"] = json!({ "type": "object", "properties": {
        "name": { "type": "string" }, "driver": { "type": "string" }, "vm_dir": { "type": "string", "description": "where its VMs are found: the VM directory (qemu) or the libvirt URI (libvirt)" },
        "datastores": { "type": "array", "items": { "type": "string" } },
        "error": { "type": ["string", "null"], "description": "why its VMs could not be listed" },
        "vms": { "type": "array", "items": { "$ref": "#/components/schemas/Vm" } }
    }});
    doc["components"]["schemas"]["Vm"] = json!({ "type": "object", "properties": {
        "name": { "type": "string" }, "state": { "type": "string", "description": "`running`, `paused`, ... or `unreachable (why)`" },
        "guest_agent": { "type": "string", "description": "`answers` or `silent (why)`" },
        "attached": { "type": "array", "items": { "type": "string" }, "description": "container files attached now" }
    }});
    doc
}

/// Backup policies, VM tags, and the job listing's filters.
fn fleet(doc: &mut Value) {
    let name = json!({ "name": "id", "in": "path", "required": true, "description": "The policy's name.", "schema": { "type": "string" } });
    doc["paths"]["/jobs"]["get"]["parameters"] = json!([
        { "name": "policy", "in": "query", "required": false, "description": "Only jobs this backup policy started.", "schema": { "type": "string" } },
        { "name": "vm", "in": "query", "required": false, "description": "Only jobs of this target (`HV/VM`, `local`).", "schema": { "type": "string" } },
        { "name": "failed", "in": "query", "required": false, "description": "Only jobs that failed or were interrupted.", "schema": { "type": "boolean" } },
        { "name": "limit", "in": "query", "required": false, "description": "At most this many, newest first (default 1000, at most 10000).", "schema": { "type": "integer", "minimum": 0, "maximum": 10000, "default": 1000 } }
    ]);
    doc["paths"]["/jobs"]["get"]["summary"] = json!("The job history, newest first: this server's jobs and those of earlier servers (from the state database; a job a stopped server left queued or running is `interrupted`).");
    doc["paths"]["/policies"] = json!({
        "get": {
            "summary": "Every backup policy, by name (option values redacted).",
            "responses": merge(json!({ "200": ok("Policies.", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Policy" } })) }), error_responses(&["401", "500", "503"]))
        },
        "post": {
            "summary": "Adds a backup policy (as `attache policy add`).",
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Policy" } } } },
            "responses": merge(json!({ "201": ok("Added.", json!({ "$ref": "#/components/schemas/Policy" })) }), error_responses(&["400", "401", "409", "500", "503"]))
        }
    });
    doc["paths"]["/policies/{id}"] = json!({
        "get": {
            "summary": "One backup policy.",
            "parameters": [name.clone()],
            "responses": merge(json!({ "200": ok("The policy.", json!({ "$ref": "#/components/schemas/Policy" })) }), error_responses(&["401", "404", "500", "503"]))
        },
        "delete": {
            "summary": "Removes a backup policy (its snapshots and job history stay).",
            "parameters": [name.clone()],
            "responses": merge(json!({ "200": ok("The removed policy.", json!({ "$ref": "#/components/schemas/Policy" })) }), error_responses(&["401", "404", "500", "503"]))
        }
    });
    let vm_tags = json!({ "type": "object", "required": ["vm", "tags"], "properties": {
        "vm": { "type": "string", "description": "`HV/VM`" },
        "tags": { "type": "array", "items": { "type": "string" } } } });
    doc["paths"]["/tags"] = json!({ "get": {
        "summary": "Every tagged VM with its tags (`attache vm list`'s tags), which policies select by `tag:NAME`.",
        "responses": merge(json!({ "200": ok("Tagged VMs.", json!({ "type": "array", "items": vm_tags.clone() })) }), error_responses(&["401", "500"]))
    }});
    doc["paths"]["/tags/{hv}/{vm}"] = json!({ "post": {
        "summary": "Adds and removes tags of one VM of a registered hypervisor (as `attache vm tag` and `vm untag`); answers its tags after the change.",
        "parameters": [
            { "name": "hv", "in": "path", "required": true, "description": "The hypervisor's name.", "schema": { "type": "string" } },
            { "name": "vm", "in": "path", "required": true, "description": "The VM's name.", "schema": { "type": "string" } }
        ],
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "properties": {
            "add": { "type": "array", "items": { "type": "string" }, "description": "Tags to add (letters, digits, `-`, `_`, `.`)." },
            "remove": { "type": "array", "items": { "type": "string" }, "description": "Tags to remove." } } } } } },
        "responses": merge(json!({ "200": ok("The VM's tags now.", vm_tags) }), error_responses(&["400", "401", "404", "500"]))
    }});
    doc["paths"]["/policies/{id}/run"] = json!({ "post": {
        "summary": "Runs a backup policy now: one backup job per VM it selects, queued within the concurrency limits; when they have ended, its retention forgets its own old snapshots (never others). An operator needs every selected VM in its scope.",
        "parameters": [name],
        "responses": merge(json!({ "202": ok("Queued.", json!({ "type": "object", "properties": {
            "policy": { "type": "string" },
            "jobs": { "type": "array", "items": { "$ref": "#/components/schemas/Job" } },
            "unreachable": { "type": "array", "description": "[hypervisor, why] of hypervisors whose VMs could not be listed", "items": { "type": "array", "items": { "type": "string" } } }
        }})) }), error_responses(&["401", "404", "409", "500", "503"]))
    }});
    doc["components"]["schemas"]["Policy"] = json!({ "type": "object", "required": ["name", "vms", "plugin", "include", "schedule"], "additionalProperties": false, "properties": {
        "name": { "type": "string" },
        "vms": { "type": "array", "items": { "type": "string" }, "description": "`HV/VM` globs (`*`, `?`) over the registered hypervisors' VMs, or `tag:NAME` (`attache vm tag`)" },
        "plugin": { "type": "string" },
        "include": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
        "options": { "type": "object", "additionalProperties": { "type": "string" }, "description": "plugin options; shown redacted" },
        "schedule": { "type": "string", "description": "cron, UTC: `MIN HOUR DOM MON DOW`, or six fields with seconds first" },
        "keep": { "type": "object", "properties": {
            "last": { "type": "integer", "minimum": 0 }, "daily": { "type": "integer", "minimum": 0 },
            "weekly": { "type": "integer", "minimum": 0 }, "monthly": { "type": "integer", "minimum": 0 } } },
        "retries": { "type": "integer", "minimum": 0, "maximum": 10, "description": "how many times a job of it that was interrupted (its server or worker died under it) runs again; a failed job does not" },
        "created": { "type": "integer", "description": "set by the server" },
        "last_fired": { "type": ["integer", "null"], "description": "when its schedule last fired; set by the server" }
    }});
    let job = &mut doc["components"]["schemas"]["Job"]["properties"];
    job["status"] =
        json!({ "enum": ["queued", "running", "succeeded", "failed", "cancelled", "interrupted"] });
    job["hypervisor"] = json!({ "type": ["string", "null"] });
    job["policy"] =
        json!({ "type": ["string", "null"], "description": "the backup policy that started it" });
}

fn core() -> Value {
    let id_param = |what: &str| json!({ "name": "id", "in": "path", "required": true, "description": what, "schema": { "type": "string" } });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Attaché",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Agentless, application-aware backup for virtual machines: snapshots, their items, and backup and restore jobs."
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/": { "get": {
                "summary": "The web console's page; needs no token (it holds no data and asks for one).", "security": [],
                "responses": { "200": { "description": "HTML.", "content": { "text/html": {} } } }
            }},
            "/ui/{file}": { "get": {
                "summary": "The web console's script (`console.js`) and style sheet (`console.css`); need no token.", "security": [],
                "parameters": [{ "name": "file", "in": "path", "required": true, "description": "console.js or console.css", "schema": { "type": "string" } }],
                "responses": merge(json!({ "200": { "description": "The file.", "content": { "text/javascript": {}, "text/css": {} } } }), error_responses(&["404"]))
            }},
            "/health": { "get": {
                "summary": "Liveness; needs no token.", "security": [],
                "responses": { "200": ok("The server is up.", json!({ "type": "object", "properties": { "status": { "type": "string" } } })) }
            }},
            "/openapi.json": { "get": {
                "summary": "This document.",
                "responses": merge(json!({ "200": ok("The OpenAPI document.", json!({ "type": "object" })) }), error_responses(&["401"]))
            }},
            "/metrics": { "get": {
                "summary": "Counters in the Prometheus text format.",
                "responses": merge(json!({ "200": { "description": "Prometheus text.", "content": { "text/plain": {} } } }), error_responses(&["401"]))
            }},
            "/snapshots": { "get": {
                "summary": "Every snapshot, oldest first.",
                "responses": merge(json!({ "200": ok("Snapshots.", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Snapshot" } })) }), error_responses(&["401", "500"]))
            }},
            "/snapshots/{id}": { "get": {
                "summary": "One snapshot, by id or unique prefix.",
                "parameters": [id_param("Snapshot id or unique prefix.")],
                "responses": merge(json!({ "200": ok("The snapshot.", json!({ "$ref": "#/components/schemas/Snapshot" })) }), error_responses(&["401", "404", "500"]))
            }},
            "/snapshots/{id}/items": { "get": {
                "summary": "Items of a snapshot with their metadata, from the catalog.",
                "parameters": [id_param("Snapshot id or unique prefix."), { "name": "prefix", "in": "query", "required": false, "description": "Only this item and what lies below it.", "schema": { "type": "string" } }],
                "responses": merge(json!({ "200": ok("Items in backup order.", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Item" } })) }), error_responses(&["401", "404", "500"]))
            }},
            "/snapshots/{id}/children": { "get": {
                "summary": "One level of a snapshot's tree: the direct children of a directory, sorted, a page at a time.",
                "parameters": [id_param("Snapshot id or unique prefix."),
                    { "name": "dir", "in": "query", "required": false, "description": "The directory (an item id, or a path component above items); the top when absent.", "schema": { "type": "string" } },
                    { "name": "offset", "in": "query", "required": false, "description": "Children to skip.", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "limit", "in": "query", "required": false, "description": "Children to list (default 1000, at most 5000).", "schema": { "type": "integer", "minimum": 0 } }],
                "responses": merge(json!({ "200": ok("A page of children.", json!({ "type": "object", "properties": {
                    "dir": { "type": ["string", "null"] }, "total": { "type": "integer" }, "offset": { "type": "integer" },
                    "children": { "type": "array", "items": { "type": "object", "properties": {
                        "id": { "type": "string" }, "name": { "type": "string" }, "below": { "type": "integer", "description": "items below it" },
                        "record": { "oneOf": [{ "$ref": "#/components/schemas/Item" }, { "type": "null" }], "description": "the item, when the child is one" } } } } } })) }),
                    error_responses(&["401", "404", "500"]))
            }},
            "/find": { "get": {
                "summary": "Which snapshots hold items matching a glob.",
                "parameters": [{ "name": "pattern", "in": "query", "required": true, "description": "Glob on whole ids when it contains '/', else on the last component.", "schema": { "type": "string" } }],
                "responses": merge(json!({ "200": ok("Matches.", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Found" } })) }), error_responses(&["400", "401", "500"]))
            }},
            "/jobs": {
                "get": {
                    "summary": "Every job this server has run or queued.",
                    "responses": merge(json!({ "200": ok("Jobs.", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Job" } })) }), error_responses(&["401", "500", "503"]))
                },
                "post": {
                    "summary": "Queues a backup, a restore, a discovery in a VM, or a verify of the repository (admins, and operators on their targets; any operator may verify). A verify's result is its report: `clean`, `snapshots`, `packs`, `blobs_checked`, `errors`, `bad_blobs`, `affected`. A discovery's result is `target`, `container`, `scope`, `depth` and `plugins`: each with `plugin`, `entries` (`id`, `kind`, `size`, `has_children`, checked on the server: the guest is untrusted) and, when it listed nothing, `error`.",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JobRequest" } } } },
                    "responses": merge(json!({ "202": ok("Queued.", json!({ "$ref": "#/components/schemas/Job" })) }), error_responses(&["400", "401", "500", "503"]))
                }
            },
            "/jobs/{id}": {
                "get": {
                    "summary": "A job's state, progress and result.",
                    "parameters": [id_param("Job id.")],
                    "responses": merge(json!({ "200": ok("The job.", json!({ "$ref": "#/components/schemas/Job" })) }), error_responses(&["401", "404", "500", "503"]))
                },
                "delete": {
                    "summary": "Cancels a job: a queued one never starts; a running one stops and cleans up.",
                    "parameters": [id_param("Job id.")],
                    "responses": merge(json!({ "202": ok("Cancellation requested.", json!({ "$ref": "#/components/schemas/Job" })) }), error_responses(&["401", "404", "409"]))
                }
            },
            "/audit": { "get": {
                "summary": "The audit log's entries, oldest first: each with seq, time, actor, event, job, data, and the hashes that chain it.",
                "parameters": [{ "name": "since", "in": "query", "required": false, "description": "Only entries from this time (RFC 3339) or this long ago (`2h`) on.", "schema": { "type": "string" } }],
                "responses": merge(json!({ "200": ok("Entries.", json!({ "type": "array", "items": { "type": "object" } })) }), error_responses(&["400", "401", "500"]))
            }},
            "/tokens": {
                "get": {
                    "summary": "Every API token: id, role, scope, when and by whom created; never the token.",
                    "responses": merge(json!({ "200": ok("Tokens.", json!({ "type": "array", "items": { "$ref": "#/components/schemas/Token" } })) }), error_responses(&["401", "500"]))
                },
                "post": {
                    "summary": "Creates a token; the answer's `token` is the only time it is shown.",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["role"], "additionalProperties": false, "properties": {
                        "role": { "enum": ["admin", "operator", "auditor"] },
                        "targets": { "type": "array", "items": { "type": "string" }, "description": "operators: globs over target names (`local`, `hv1/*`)" },
                        "restore_to": { "type": "array", "items": { "type": "string" }, "description": "operators: absolute directories restores may write below" }
                    }}}}},
                    "responses": merge(json!({ "201": ok("Created.", json!({ "$ref": "#/components/schemas/Token" })) }), error_responses(&["400", "401", "500"]))
                }
            },
            "/tokens/{id}": { "delete": {
                "summary": "Revokes a token.",
                "parameters": [id_param("Token id.")],
                "responses": merge(json!({ "200": ok("The revoked token.", json!({ "$ref": "#/components/schemas/Token" })) }), error_responses(&["401", "404", "500"]))
            }},
            "/jobs/{id}/events": { "get": {
                "summary": "Server-sent events: `status` (the whole job) and `progress` ({items, bytes}) until the job finishes.",
                "parameters": [id_param("Job id.")],
                "responses": merge(json!({ "200": { "description": "An event stream.", "content": { "text/event-stream": {} } } }), error_responses(&["401", "404"]))
            }}
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "Token": { "type": "object", "properties": {
                    "id": { "type": "string" }, "role": { "enum": ["admin", "operator", "auditor"] },
                    "targets": { "type": "array", "items": { "type": "string" } },
                    "restore_to": { "type": "array", "items": { "type": "string" } },
                    "created": { "type": "string" }, "created_by": { "type": "string" },
                    "token": { "type": "string", "description": "only in the answer to its creation" }
                }},
                "Snapshot": { "type": "object", "properties": {
                    "id": { "type": "string" }, "time": { "type": "integer" }, "source": { "type": "string" },
                    "plugin": { "type": "string" }, "plugin_version": { "type": "string" },
                    "includes": { "type": "array", "items": { "type": "string" } }, "parent": { "type": ["string", "null"] },
                    "items": { "type": "integer" }, "bytes": { "type": "integer" }, "added_bytes": { "type": "integer" },
                    "read_bytes": { "type": "integer" },
                    "warnings": { "type": "array", "items": { "type": "object", "properties": { "id": { "type": "string" }, "message": { "type": "string" } } } }
                }},
                "Item": { "type": "object", "required": ["id", "kind", "size"], "properties": {
                    "id": { "type": "string" }, "kind": { "type": "string" }, "size": { "type": "integer" },
                    "mode": { "type": "integer" }, "uid": { "type": "integer" }, "gid": { "type": "integer" },
                    "mtime": { "type": "object", "properties": { "seconds": { "type": "integer" }, "nanoseconds": { "type": "integer" } } },
                    "symlink_target": { "type": "string" }, "hardlink_target": { "type": "string" }
                }},
                "Found": { "type": "object", "properties": {
                    "snapshot": { "type": "string" }, "time": { "type": "integer" }, "source": { "type": "string" },
                    "id": { "type": "string" }, "kind": { "type": "string" }, "size": { "type": "integer" }
                }},
                "JobRequest": { "oneOf": [
                    { "type": "object", "required": ["kind", "backup"], "properties": {
                        "kind": { "const": "backup" },
                        "backup": { "type": "object", "required": ["target", "plugin", "include"], "additionalProperties": false, "properties": {
                            "target": { "type": "string", "description": "`local` or `HYPERVISOR/VM`" },
                            "plugin": { "type": "string" },
                            "include": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
                            "fsfreeze": { "type": "boolean", "description": "VMs: freeze the guest's filesystems while the stream is read" },
                            "freeze_limit_secs": { "type": "integer", "minimum": 0, "description": "VMs: the longest freeze (default 10)" },
                            "timeout_secs": { "type": "integer", "minimum": 0, "description": "VMs: fail and clean up when the runner has not finished by then" },
                            "app_password": { "type": "string", "description": "the application's (database's) password; shown redacted" },
                            "app_password_file": { "type": "string", "description": "a file on the server whose first line is the application's password" },
                            "options": { "type": "object", "additionalProperties": { "type": "string" }, "description": "plugin options KEY: VALUE (the keys the plugin declares); job views show the values redacted" },
                            "memory_limit_mib": { "type": "integer", "minimum": 1, "description": "the plugin's memory limit, within the policy's ceiling" },
                            "deadline_secs": { "type": "integer", "minimum": 1, "description": "the plugin's deadline, within the policy's ceiling" }
                        }}
                    }},
                    { "type": "object", "required": ["kind", "restore"], "properties": {
                        "kind": { "const": "restore" },
                        "restore": { "type": "object", "required": ["snapshot", "to"], "additionalProperties": false, "properties": {
                            "snapshot": { "type": "string" },
                            "items": { "type": "array", "items": { "type": "string" } },
                            "to": { "type": "string", "description": "`local`, `local:DIR`, `HYPERVISOR/VM` or `HYPERVISOR/VM:DIR`" },
                            "overwrite": { "type": "boolean" },
                            "as": { "type": "string", "description": "restore the one item under this id (another database, table or path)" },
                            "timeout_secs": { "type": "integer", "minimum": 0, "description": "VMs: fail and clean up when the runner has not finished by then" },
                            "app_password": { "type": "string", "description": "the application's (database's) password; shown redacted" },
                            "app_password_file": { "type": "string", "description": "a file on the server whose first line is the application's password" },
                            "options": { "type": "object", "additionalProperties": { "type": "string" }, "description": "plugin options KEY: VALUE (the keys the plugin declares); job views show the values redacted" },
                            "memory_limit_mib": { "type": "integer", "minimum": 1, "description": "the plugin's memory limit, within the policy's ceiling" },
                            "deadline_secs": { "type": "integer", "minimum": 1, "description": "the plugin's deadline, within the policy's ceiling" }
                        }}
                    }}
                ]},
                "Job": { "type": "object", "properties": {
                    "id": { "type": "string" }, "kind": { "enum": ["backup", "restore", "verify", "discover"] }, "target": { "type": "string" },
                    "status": { "enum": ["queued", "running", "succeeded", "failed", "cancelled", "interrupted"] },
                    "request": { "$ref": "#/components/schemas/JobRequest" },
                    "progress": { "type": "object", "properties": { "items": { "type": "integer" }, "bytes": { "type": "integer" } } },
                    "result": { "type": ["object", "null"] }, "error": { "type": ["string", "null"] },
                    "created": { "type": "integer" }, "started": { "type": ["integer", "null"] }, "finished": { "type": ["integer", "null"] }
                }}
            }
        }
    })
}
