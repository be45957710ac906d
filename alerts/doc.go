// Package alerts turns breakers' transition streams into alerts: the
// daemon behind cmd/alertd.
//
// Every transition of a breaker is one entry of its stream
// circuit_breaker:{NAME}:events, written by lua/breaker-8.lua. A Daemon
// reads these streams through a consumer group, so that several daemons
// can run side by side, and hands alerts to a Sink: SlackSink posts them to
// a Slack incoming webhook in the seed's format, WriterSink prints them.
//
// Delivery is at-least-once with the duplicate window made as small as
// Redis allows: an entry is acknowledged only after the sink accepted its
// alert, in one MULTI that also records the delivery in the breaker's hash
// tag; a per-breaker lock makes one daemon at a time post a breaker's
// alerts, in stream order. Openings that follow an opening alert within the
// flap window are folded into one message with a count, and transitions
// read long after they happened are summarised. docs/alerts.md explains
// the design, its remaining duplicate window, and the daemon's flags.
package alerts
