package sqlkit

import (
	"bytes"
	"text/template"
)

// NotifyChannel is the LISTEN/NOTIFY channel the capture trigger notifies.
// The payload is the writing transaction's id: a pointer into the outbox,
// never row data.
const NotifyChannel = "cdc_events"

// The chunking of captured statements (functions/10_capture.sql): how many
// rows, and about how many stored bytes of them, one outbox row holds.
const (
	insertChunkRows  = 1000
	insertChunkBytes = 256 << 10
	updateChunkRows  = 512
	updateChunkBytes = 128 << 10
	// chunkJSONBytes cuts the rare statement whose rows compress so well
	// that their JSON would approach PostgreSQL's 1 GB limit on a value.
	chunkJSONBytes = 16 << 20
)

// MaxChannelBytes is the longest channel cdc.publish accepts, in bytes.
const MaxChannelBytes = 256

// pgrelay's advisory lock keys, in one place so that no two uses collide:
// migrateLockKey serialises migrations (queries/bootstrap.sql, unlock.sql),
// captureFunctionsLockKey the changes of capture triggers and functions
// (cdc.lock_capture_functions in functions/17_capture_with.sql).
const (
	migrateLockKey          int64 = 7305870462113470001
	captureFunctionsLockKey int64 = 7305870462113470002
)

// sqlConstants are the constants the embedded SQL uses, as {{.Name}}: each
// is defined once, here, for the SQL and the Go code alike.
var sqlConstants = map[string]any{
	"NotifyChannel":           NotifyChannel,
	"IDStep":                  maxChunkEvents,
	"InsertChunkRows":         insertChunkRows,
	"InsertChunkBytes":        insertChunkBytes,
	"UpdateChunkRows":         updateChunkRows,
	"UpdateChunkBytes":        updateChunkBytes,
	"ChunkJSONBytes":          chunkJSONBytes,
	"MaxChannelBytes":         MaxChannelBytes,
	"MigrateLockKey":          migrateLockKey,
	"CaptureFunctionsLockKey": captureFunctionsLockKey,
}

// render fills the constants into an embedded SQL file. The files are fixed
// at build time, so a template error is a programming error.
func render(name, text string) string {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		panic("sqlkit: " + name + ": " + err.Error())
	}
	var b bytes.Buffer
	if err := t.Execute(&b, sqlConstants); err != nil {
		panic("sqlkit: " + name + ": " + err.Error())
	}
	return b.String()
}
