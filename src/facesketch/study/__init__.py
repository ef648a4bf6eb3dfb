"""The user study of HIDA's Figure 5 as a tool: create a study folder, serve it to
participants on a local web page, summarise the answers (facesketch study create|serve|summary)."""
