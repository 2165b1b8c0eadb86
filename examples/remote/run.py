"""Index and search through Pods that run on two jinad daemons (see README.md)."""

from jinad_fab import Document, Flow

if __name__ == "__main__":
    with Flow.load_config("flow.yml") as f:
        f.index([Document(text=t) for t in ["a red apple", "a green pear", "the red planet", "green tea"]])
        for q in f.search([Document(text="red")], parameters={"top_k": 2}):
            print(q.text, "->", [(m.text, round(m.scores["euclidean"], 3)) for m in q.matches])
