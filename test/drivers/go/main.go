// The shared driver scenarios, as a Go application runs them with the official driver
// (see test/other-drivers.test.ts).
//
// usage: go-scenarios URI DB SCENARIO...   (crud, cursors, bulk, sessions, transactions, stepdown)
// Prints one JSON line per scenario; exits 1 at the first failure, with the reason on stderr.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func connect(uri string, poolSize uint64) *mongo.Client {
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetMaxPoolSize(poolSize))
	if err != nil {
		panic(err)
	}
	return c
}

func check(cond bool, format string, args ...any) {
	if !cond {
		panic(fmt.Sprintf(format, args...))
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// failures collects what goroutines report, for one check at the end.
type failures struct {
	mu   sync.Mutex
	list []string
}

func (f *failures) add(v any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = append(f.list, fmt.Sprint(v))
}

func (f *failures) none(what string) {
	check(len(f.list) == 0, "%s: %v", what, f.list)
}

func crud(ctx context.Context, uri, db string) map[string]any {
	client := connect(uri, 3)
	defer client.Disconnect(ctx)
	col := client.Database(db).Collection("people")
	_, err := col.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}, {Key: "name", Value: "ada"}}, bson.D{{Key: "_id", Value: 2}, {Key: "name", Value: "grace"}}})
	must(err)
	_, err = col.UpdateOne(ctx, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "hopper"}}}})
	must(err)
	cur, err := col.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	must(err)
	var people []struct {
		ID   int32  `bson:"_id"`
		Name string `bson:"name"`
	}
	must(cur.All(ctx, &people))
	check(len(people) == 2 && people[0].Name == "ada" && people[1].Name == "hopper", "find returned %v", people)
	_, err = col.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "name", Value: "again"}})
	check(mongo.IsDuplicateKeyError(err), "duplicate insert: %v", err)
	del, err := col.DeleteMany(ctx, bson.D{})
	must(err)
	check(del.DeletedCount == 2, "deleted %d", del.DeletedCount)
	nums := client.Database(db).Collection("nums")
	docs := make([]any, 30)
	for i := range docs {
		docs[i] = bson.D{{Key: "v", Value: i}}
	}
	_, err = nums.InsertMany(ctx, docs)
	must(err)
	agg, err := nums.Aggregate(ctx, mongo.Pipeline{{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "s", Value: bson.D{{Key: "$sum", Value: "$v"}}}}}}})
	must(err)
	var sums []bson.M
	must(agg.All(ctx, &sums))
	check(len(sums) == 1 && fmt.Sprint(sums[0]["s"]) == "435", "aggregate returned %v", sums)
	big := strings.Repeat("b", 15*1024*1024)
	_, err = client.Database(db).Collection("big").InsertOne(ctx, bson.D{{Key: "_id", Value: "big"}, {Key: "big", Value: big}})
	must(err)
	var back struct{ Big string }
	must(client.Database(db).Collection("big").FindOne(ctx, bson.D{{Key: "_id", Value: "big"}}).Decode(&back))
	check(len(back.Big) == len(big), "15 MB document came back with %d bytes", len(back.Big))
	return map[string]any{}
}

func cursors(ctx context.Context, uri, db string) map[string]any {
	seed := connect(uri, 1)
	docs := make([]any, 200)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: i}}
	}
	_, err := seed.Database(db).Collection("cursors").InsertMany(ctx, docs)
	must(err)
	must(seed.Disconnect(ctx))
	const clients = 10
	var wg sync.WaitGroup
	var failed failures
	for c := 0; c < clients; c++ {
		client := connect(uri, 2)
		defer client.Disconnect(ctx)
		for k := 0; k < 2; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					if r := recover(); r != nil {
						failed.add(r)
					}
				}()
				cur, err := client.Database(db).Collection("cursors").Find(ctx, bson.D{}, options.Find().SetBatchSize(7).SetSort(bson.D{{Key: "_id", Value: 1}}))
				must(err)
				var got []struct {
					ID int32 `bson:"_id"`
				}
				must(cur.All(ctx, &got))
				check(len(got) == 200, "drained %d documents", len(got))
				for i, d := range got {
					check(int(d.ID) == i, "document %d has _id %d", i, d.ID)
				}
			}()
		}
	}
	wg.Wait()
	failed.none("cursor failures")
	return map[string]any{"cursors": clients * 2}
}

func bulk(ctx context.Context, uri, db string) map[string]any {
	client := connect(uri, 2)
	defer client.Disconnect(ctx)
	col := client.Database(db).Collection("bulk")
	_, err := col.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}})
	must(err)
	ids := func(v ...int) []any {
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = bson.D{{Key: "_id", Value: x}}
		}
		return out
	}
	res, err := col.InsertMany(ctx, ids(1, 2, 3, 4), options.InsertMany().SetOrdered(true))
	var bwe mongo.BulkWriteException
	check(errors.As(err, &bwe), "ordered insert: %v", err)
	check(res != nil && len(res.InsertedIDs) == 2, "ordered insert inserted %v", res)
	check(len(bwe.WriteErrors) == 1 && bwe.WriteErrors[0].Index == 2 && bwe.WriteErrors[0].Code == 11000, "write errors %v", bwe.WriteErrors)
	_, err = col.InsertMany(ctx, ids(3, 5, 1), options.InsertMany().SetOrdered(false))
	check(errors.As(err, &bwe), "unordered insert: %v", err)
	idx := []int{}
	for _, we := range bwe.WriteErrors {
		idx = append(idx, we.Index)
	}
	sort.Ints(idx)
	check(len(idx) == 2 && idx[0] == 0 && idx[1] == 2, "unordered write errors at %v", idx)
	return map[string]any{}
}

func sessions(ctx context.Context, uri, db string) map[string]any {
	client := connect(uri, 2)
	defer client.Disconnect(ctx)
	col := client.Database(db).Collection("sessions")
	sess, err := client.StartSession(options.Session().SetCausalConsistency(true))
	must(err)
	must(mongo.WithSession(ctx, sess, func(sc context.Context) error {
		if _, err := col.InsertOne(sc, bson.D{{Key: "_id", Value: "s1"}}); err != nil {
			return err
		}
		var got bson.M
		if err := col.FindOne(sc, bson.D{{Key: "_id", Value: "s1"}}).Decode(&got); err != nil {
			return err
		}
		check(got["_id"] == "s1", "found %v", got)
		return nil
	}))
	sess.EndSession(ctx)
	for i := 0; i < 3; i++ {
		n, err := col.CountDocuments(ctx, bson.D{})
		must(err)
		check(n == 1, "count %d", n)
	}
	return map[string]any{}
}

// Every statement of each transaction must reach one router (the test reads the fleet's log).
func transactions(ctx context.Context, uri, db string) map[string]any {
	const clients, perClient = 6, 3
	var wg sync.WaitGroup
	var failed failures
	for ci := 0; ci < clients; ci++ {
		client := connect(uri, 3)
		defer client.Disconnect(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			col := client.Database(db).Collection("t")
			for k := 0; k < perClient; k++ {
				sess, err := client.StartSession()
				if err == nil {
					_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
						if _, err := col.InsertOne(sc, bson.D{{Key: "ci", Value: ci}, {Key: "k", Value: k}, {Key: "step", Value: 1}}); err != nil {
							return nil, err
						}
						if _, err := col.InsertOne(sc, bson.D{{Key: "ci", Value: ci}, {Key: "k", Value: k}, {Key: "step", Value: 2}}); err != nil {
							return nil, err
						}
						if err := col.FindOne(sc, bson.D{{Key: "ci", Value: ci}, {Key: "k", Value: k}}).Err(); err != nil {
							return nil, err
						}
						return col.UpdateOne(sc, bson.D{{Key: "ci", Value: ci}, {Key: "k", Value: k}, {Key: "step", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "done", Value: true}}}})
					})
					sess.EndSession(ctx)
				}
				if err != nil {
					failed.add(err)
				}
			}
		}()
	}
	wg.Wait()
	failed.none("transaction failures")
	return map[string]any{"transactions": clients * perClient}
}

// Retryable inserts while the primary steps down: asks the test (stdout/stdin) to step it down.
func stepdown(ctx context.Context, uri, db string) map[string]any {
	const writers, perWriter = 4, 30
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetRetryWrites(true))
	must(err)
	defer client.Disconnect(ctx)
	col := client.Database(db).Collection("failover")
	var wg sync.WaitGroup
	var failed failures
	stdin := bufio.NewReader(os.Stdin)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				if _, err := col.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("%d-%d", w, i)}}); err != nil {
					failed.add(err)
					return
				}
				if w == 0 && i == perWriter/4 {
					fmt.Println(`{"stepdown":"now"}`)
					_, _ = stdin.ReadString('\n')
				}
			}
		}()
	}
	wg.Wait()
	failed.none("write failures")
	n, err := col.CountDocuments(ctx, bson.D{})
	must(err)
	check(n == writers*perWriter, "stored %d", n)
	return map[string]any{"stored": n}
}

var scenarios = map[string]func(context.Context, string, string) map[string]any{
	"crud": crud, "cursors": cursors, "bulk": bulk, "sessions": sessions, "transactions": transactions, "stepdown": stepdown,
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: go-scenarios URI DB SCENARIO...")
		os.Exit(2)
	}
	uri, db := os.Args[1], os.Args[2]
	for _, name := range os.Args[3:] {
		run, ok := scenarios[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown scenario %s\n", name)
			os.Exit(2)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		result := func() (r map[string]any) {
			defer func() {
				if p := recover(); p != nil {
					fmt.Fprintf(os.Stderr, "go scenario %s failed: %v\n", name, p)
					os.Exit(1)
				}
			}()
			return run(ctx, uri, db+"_"+name)
		}()
		cancel()
		result["driver"], result["scenario"], result["ok"] = "go", name, true
		line, _ := json.Marshal(result)
		fmt.Println(string(line))
	}
}
