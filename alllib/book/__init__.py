"""The book: each chapter's setup, its generated sentences and figures, the generated pages, the model
card, and an executed notebook made a page."""
