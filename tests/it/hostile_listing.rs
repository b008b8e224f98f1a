//! A cloud whose searches and listings cannot be taken at their word: capped pages, an ignored
//! `offset`, ignored matching keys, results of other studies. A study is complete only against a
//! listing that is itself complete.
