// keyflows: searching a requirement ID (ENV-14) lands on that requirement first.
// Sphinx splits "ENV-14" into the words "env" and "14", which also match ENV-1,
// ENV-140 and every page mentioning both; this scorer puts the requirement whose ID is
// the whole query first. Sphinx's default weights otherwise (themes/basic/searchtools.js).
var Scorer = {
  score: (result) => {
    const [_docname, _title, anchor, _descr, score, _filename, _kind] = result;
    const params = new URLSearchParams(window.location.search);
    const query = (params.get("q") || "").trim().toUpperCase();
    if (/^(API|KD|KP|ENV|SC|LOCK|HC)-[1-9][0-9]*$/.test(query) && anchor === "#req-" + query) {
      return score + 1000;
    }
    return score;
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
