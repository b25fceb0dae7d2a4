package meili

// IndexerActions are the Meilisearch API key actions the store performs with Config.APIKey: create and
// inspect its indexes (schema.go), read and apply their settings, add, read and delete documents (batch.go,
// fields.go, search.go: GetTraces and retention), read the span index's stats (fields.go) and poll the tasks
// of all of that (client.go). Searches are not among them: they use Config.SearchAPIKey. `indexer
// meili-keys` creates a key with exactly these, and its test checks against a real Meilisearch that the
// store works with them and fails without any one of them.
var IndexerActions = []string{
	"indexes.create", "indexes.get", "settings.get", "settings.update",
	"documents.add", "documents.get", "documents.delete",
	"stats.get", "tasks.get",
}

// SearchActions are the actions of Config.SearchAPIKey.
var SearchActions = []string{"search"}
