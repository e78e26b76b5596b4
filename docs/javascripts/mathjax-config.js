// MathJax 3 settings for the whole site.
//
// MathJax looks for math only in
// * .arithmatex: Python-Markdown's arithmatex turns $...$ in Markdown pages
//   into \(...\) inside these elements;
// * .jp-RenderedMarkdown: notebook markdown cells and text/markdown outputs
//   of code cells, whose $...$ nbconvert leaves untouched;
// * .jp-RenderedLatex: text/latex outputs such as SymPy expressions;
// * .build-check: "Checked at build" notes, whose claims may contain TeX;
// * .md-ellipsis: navigation and table-of-contents titles, where a heading's
//   math lands.
// MathJax skips an element whose class matches ignoreHtmlClass unless the
// class also matches processHtmlClass, and an element without a class
// inherits its parent's choice. ".+" therefore ignores every classed element
// outside those five, while the unclassed paragraphs, lists and tables inside
// a markdown cell are searched. Code, <pre> outputs and the rest of the page
// keep their dollar signs.
//
// Equations are numbered when they carry \tag{...} or sit in a numbered
// environment ("ams" tags); \label{...} and \eqref{...} link them across
// the cells of one page.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
    tags: "ams",
  },
  options: {
    ignoreHtmlClass: ".+",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown|jp-RenderedLatex|build-check|md-ellipsis",
  },
  startup: {
    pageReady() {
      return window.MathJax.startup.defaultPageReady().then(markTypeset);
    },
  },
};

// Records which page was typeset last; the browser tests wait for it.
function markTypeset() {
  window.hw2libTypesetPath = window.location.pathname;
}

// Material's instant navigation swaps the page body without a reload, so the
// new page is typeset again each time the document$ observable emits. Each
// run is chained on MathJax's startup promise, so two runs never overlap.
// Before MathJax has loaded there is nothing to do: its own startup typesets
// the page.
function typesetPage() {
  const mathjax = window.MathJax;
  if (!mathjax || !mathjax.startup || !mathjax.startup.promise) {
    return;
  }
  mathjax.startup.promise = mathjax.startup.promise
    .then(() => {
      mathjax.typesetClear();
      mathjax.texReset();
      return mathjax.typesetPromise();
    })
    .then(markTypeset)
    .catch((error) => console.error("MathJax typesetting failed:", error));
}

if (typeof document$ !== "undefined") {
  document$.subscribe(typesetPage);
}
