// Sphinx's search scorer (html_search_scorer in _config.yml): Sphinx's own weights, with one change.
// The book has one page per training run, and a word such as "kappa" is on every one of them; a reader
// searching the book wants the chapters first, so a run page (book/_generated/runs/...) ranks below every
// other page that matches. Run pages stay searchable: a run's key still finds its page.
var RUN_PAGES = "book/_generated/runs/";
var RUN_PAGE_PENALTY = 1000;
var Scorer = {
  score: (result) => {
    const [docname, title, anchor, descr, score, filename] = result;
    return docname.startsWith(RUN_PAGES) ? score - RUN_PAGE_PENALTY : score;
  },
  objNameMatch: 11,
  objPartialMatch: 6,
  objPrio: { 0: 15, 1: 5, 2: -5 },
  objPrioDefault: 0,
  title: 15,
  partialTitle: 7,
  term: 5,
  partialTerm: 2,
};
