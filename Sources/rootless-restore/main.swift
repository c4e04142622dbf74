import RestoreCLI

RootlessRestore.main()
