import RestoreCLI

RootlessRestore.entry()
