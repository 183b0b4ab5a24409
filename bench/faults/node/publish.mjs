#!/usr/bin/env node
// A publisher of recall commands in Node.js, written from docs/contract.md and the JSON Schemas it
// points to, and nothing else: it proves that the contract alone is enough for a client in
// another language. The fault suite's other_language scenario runs it as a child process.
//
// Usage:
//   node publish.mjs [--url AMQP_URL] [--prefix PREFIX] [--lane bulk|background] [--out PATH]
//                    (--commands PATH|- | --generate N [--tag TEXT])
// --commands reads a JSON list of command objects; message_id, issued_at and schema_version are filled in
// when absent. --generate N makes about N mixed commands itself (creates; creates then fixes; creates then
// deletes; gets of created VINs). Every command is checked against its verb's schema before anything is
// published (a command DVSA would certainly refuse is refused here, naming the field and the reason).
// The published commands are written as a JSON list to --out (default: standard output).
// Exit status: 0 every command confirmed by the broker; 1 a nack, a return (unroutable) or a broker error;
// 2 bad arguments or a refused command (nothing published).

import { randomUUID, randomInt } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import amqp from "amqplib";

const VERBS = ["create", "fix", "delete", "get"];
const VIN = /^[A-Za-z0-9]{16,17}$/;
const MANUFACTURER_REF = /^[A-Za-z0-9_/\\-]{1,49}$/;
const DVSA_REF = /^[A-Za-z]+\/[0-9]{4}\/[0-9]{3}$/;
const COMMON = ["verb", "schema_version", "message_id", "issued_at", "vin", "correlation_id",
  "manufacturer_campaign_reference", "dvsa_campaign_reference"];
const FIELDS = {
  create: [...COMMON, "recall_campaign_start_date"],
  fix: [...COMMON, "rectification_date", "repair_status"],
  delete: COMMON,
  get: COMMON,
};
const REQUIRED = {
  create: ["vin", "manufacturer_campaign_reference", "recall_campaign_start_date"],
  fix: ["vin", "rectification_date"],
  delete: ["vin"],
  get: ["vin"],
};

class Refused extends Error {}

function parseArgs(argv) {
  const args = {
    url: process.env.RECALLS_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/",
    prefix: process.env.RECALLS_PREFIX ?? "recalls",
    lane: "",
    out: "-",
    commands: null,
    generate: null,
    tag: "NODE",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Refused(`${flag}: a value is needed`);
    const key = { "--url": "url", "--prefix": "prefix", "--lane": "lane", "--out": "out",
      "--commands": "commands", "--generate": "generate", "--tag": "tag" }[flag];
    if (key === undefined) throw new Refused(`unknown argument ${flag}`);
    args[key] = value;
  }
  if ((args.commands === null) === (args.generate === null)) {
    throw new Refused("give exactly one of --commands PATH and --generate N");
  }
  if (!["", "bulk", "background"].includes(args.lane)) {
    throw new Refused("--lane: only 'bulk' and 'background' are known");
  }
  return args;
}

function isDate(text) {
  if (typeof text !== "string" || !/^[0-9]{4}-[0-9]{2}-[0-9]{2}$/.test(text)) return false;
  const parsed = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(parsed.getTime()) && parsed.toISOString().slice(0, 10) === text;
}

function checkField(name, value) {
  const optionalText = (pattern) => value === null || (typeof value === "string" && pattern.test(value));
  const checks = {
    verb: () => VERBS.includes(value),
    schema_version: () => value === 1,
    message_id: () => typeof value === "string" && value.length >= 1 && value.length <= 128,
    issued_at: () => typeof value === "string",
    correlation_id: () => value === null || typeof value === "string",
    vin: () => typeof value === "string" && VIN.test(value),
    manufacturer_campaign_reference: () => optionalText(MANUFACTURER_REF),
    dvsa_campaign_reference: () => optionalText(DVSA_REF),
    recall_campaign_start_date: () => isDate(value),
    rectification_date: () => isDate(value),
    repair_status: () => value === "FIXED" || value === "NOT_FIXED",
  };
  if (!checks[name]()) throw new Refused(`${name}: ${JSON.stringify(value)} does not match the schema`);
}

// Fills in what the contract lets a publisher leave out, then checks the command against its verb's schema.
function prepare(input, index) {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    throw new Refused(`command ${index}: not a JSON object`);
  }
  const command = { schema_version: 1, message_id: randomUUID(), issued_at: new Date().toISOString(), ...input };
  const where = `command ${index} (${command.message_id})`;
  if (!VERBS.includes(command.verb)) throw new Refused(`${where}: verb: must be one of ${VERBS.join(", ")}`);
  try {
    for (const name of Object.keys(command)) {
      if (!FIELDS[command.verb].includes(name)) throw new Refused(`${name}: not a field of ${command.verb}`);
      checkField(name, command[name]);
    }
    for (const name of REQUIRED[command.verb]) {
      if (command[name] === undefined) throw new Refused(`${name}: required for ${command.verb}`);
    }
    const hasReference = command.manufacturer_campaign_reference || command.dvsa_campaign_reference;
    if ((command.verb === "fix" || command.verb === "delete") && !hasReference) {
      throw new Refused("manufacturer_campaign_reference or dvsa_campaign_reference: one is required");
    }
  } catch (error) {
    throw error instanceof Refused ? new Refused(`${where}: ${error.message}`) : error;
  }
  return command;
}

function randomVin() {
  // Letters and digits as VINs use them (no I, O or Q).
  const alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
  return Array.from({ length: 17 }, () => alphabet[randomInt(alphabet.length)]).join("");
}

// About `count` commands across the four verbs, with a known end state: a fixed VIN is created first,
// a deleted one too, and a get asks about a VIN created earlier.
function generate(count, tag) {
  const commands = [];
  const created = [];
  const today = new Date().toISOString().slice(0, 10);
  for (let round = 0; commands.length < count; round += 1) {
    const vin = randomVin();
    const reference = `${tag}-${round}`;
    const create = { verb: "create", vin, manufacturer_campaign_reference: reference,
      dvsa_campaign_reference: "R/2025/101", recall_campaign_start_date: "2025-09-01" };
    const kind = VERBS[round % VERBS.length];
    if (kind === "get" && created.length > 0) {
      commands.push({ verb: "get", vin: created[round % created.length] });
      continue;
    }
    commands.push(create);
    if (kind === "fix") {
      commands.push({ verb: "fix", vin, manufacturer_campaign_reference: reference,
        rectification_date: today, repair_status: "FIXED" });
    } else if (kind === "delete") {
      commands.push({ verb: "delete", vin, manufacturer_campaign_reference: reference });
    } else {
      created.push(vin);
    }
  }
  return commands;
}

function loadCommands(args) {
  if (args.generate !== null) {
    const count = Number.parseInt(args.generate, 10);
    if (!(count > 0)) throw new Refused("--generate: a positive whole number is needed");
    return generate(count, args.tag);
  }
  const text = readFileSync(args.commands === "-" ? 0 : args.commands, "utf8");
  const list = JSON.parse(text);
  if (!Array.isArray(list)) throw new Refused("--commands: the file must hold a JSON list");
  return list;
}

function properties(command) {
  return {
    contentType: "application/json",
    persistent: true,
    mandatory: true,
    messageId: command.message_id,
    type: command.verb,
    timestamp: Math.floor(Date.parse(command.issued_at) / 1000) || undefined,
    correlationId: command.correlation_id ?? undefined,
  };
}

// Publishes every command on a confirm channel; resolves to the problems seen: the commands the broker
// nacked or returned (by message_id) and any channel error.
async function publishAll(args, commands) {
  const connection = await amqp.connect(args.url);
  const failed = new Map();
  const errors = [];
  try {
    const channel = await connection.createConfirmChannel();
    channel.on("error", (error) => errors.push(`channel closed by the broker: ${error.message}`));
    channel.on("return", (message) => {
      failed.set(message.properties.messageId, `returned (unroutable): ${message.fields.replyText}`);
    });
    const exchange = `${args.prefix}.commands`;
    for (const command of commands) {
      const routingKey = args.lane ? `${command.verb}.${args.lane}` : command.verb;
      const body = Buffer.from(JSON.stringify(command));
      const ok = channel.publish(exchange, routingKey, body, properties(command), (error) => {
        if (error && !failed.has(command.message_id)) failed.set(command.message_id, "nacked");
      });
      if (!ok) await once(channel, "drain");
    }
    // A nack or a closed channel fails the wait; the callbacks and listeners above say which.
    await channel.waitForConfirms().catch((error) => errors.push(`confirms: ${error.message}`));
    await channel.close().catch(() => {});
  } finally {
    await connection.close().catch(() => {});
  }
  return { failed, errors };
}

async function main() {
  let args;
  let commands;
  try {
    args = parseArgs(process.argv.slice(2));
    commands = loadCommands(args).map(prepare);
  } catch (error) {
    process.stderr.write(`publish.mjs: refused: ${error.message}\n`);
    return 2;
  }
  let outcome;
  try {
    outcome = await publishAll(args, commands);
  } catch (error) {
    process.stderr.write(`publish.mjs: broker error: ${error.message}\n`);
    return 1;
  }
  const text = `${JSON.stringify(commands)}\n`;
  if (args.out === "-") process.stdout.write(text);
  else writeFileSync(args.out, text);
  for (const error of outcome.errors) process.stderr.write(`publish.mjs: ${error}\n`);
  for (const [id, reason] of outcome.failed) process.stderr.write(`publish.mjs: ${id}: ${reason}\n`);
  const confirmed = commands.length - outcome.failed.size;
  process.stderr.write(`publish.mjs: ${confirmed} of ${commands.length} confirmed\n`);
  return outcome.failed.size === 0 && outcome.errors.length === 0 ? 0 : 1;
}

process.exitCode = await main();
