package sqlkit_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgrelay/pgrelay/sqlkit"
)

// Install pgrelay's schema and enable CDC on every table of schema public.
func ExampleEnsureCDCFor() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/postgres")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	if err := sqlkit.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}
	tables, err := sqlkit.AllTables(ctx, pool, "public")
	if err != nil {
		log.Fatal(err)
	}
	results, err := sqlkit.EnsureCDCFor(ctx, pool, tables...)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range results {
		fmt.Println(r.Table, r.Status)
	}
}
